"""hero.achievements.revoke() and achievements kept only while earned."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

import hero
from hero.events import Outcome, Revocation
from hero.exceptions import (
    HeroError,
    InvalidRevocation,
    NotHeldError,
    UnknownAchievement,
)
from hero.ledger import get_ledger
from hero.models import AchievementCount, AchievementUnlocked, LedgerEntry
from hero.signals import achievement_revoked
from tests.conftest import Backend, stored_domain_events


def holds(alias: str, user: Any, achievement_id: str) -> int | None:
    row = (
        AchievementUnlocked.objects.using(alias)
        .filter(user=user, achievement=achievement_id)
        .first()
    )
    return None if row is None else row.level


@pytest.mark.django_db
def test_revoking_drops_the_holding_and_count_but_keeps_the_history(
    backend: Backend, make_user: Any
) -> None:
    user, staff = make_user("ann"), make_user("mod")
    hero.achievements.unlock("score_changed", user=user, points=100)

    revocation = hero.achievements.revoke(
        user, "points", reason="cheating", actor=staff
    )

    assert revocation == Revocation("points", 2, "cheating", f"auth.user:{staff.pk}")
    assert holds(backend.alias, user, "points") is None
    counts = AchievementCount.objects.using(backend.alias).holders(["points"])
    assert not any(counts.values())
    kinds = [e.kind for e in hero.achievements.history(user)]
    assert kinds == ["unlocked", "revoked"]
    entry = LedgerEntry.objects.using(backend.alias).get(user=user, kind="revoked")
    values = entry.personal_values()
    assert (values["reason"], values["actor"], entry.previous_level) == (
        "cheating",
        f"auth.user:{staff.pk}",
        2,
    )


@pytest.mark.django_db
def test_a_revoked_achievement_can_be_unlocked_again(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=1_000)
    hero.achievements.revoke(user, "points", reason="reset")

    assert hero.achievements.unlock("score_changed", user=user, points=10) == [
        Outcome("points", 1, None)
    ]
    assert holds(backend.alias, user, "points") == 1
    names = [type(e).__name__ for e in stored_domain_events()]
    assert names == ["Unlocked", "Revoked", "Unlocked"]


@pytest.mark.django_db
def test_revoking_what_is_not_held_is_an_error_and_writes_nothing(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    with pytest.raises(
        NotHeldError, match=r"does not hold 'points'.*Nothing was written"
    ):
        hero.achievements.revoke(user, "points", reason="x")
    hero.achievements.unlock("score_changed", user=user, points=10)
    hero.achievements.revoke(user, "points", reason="x")
    with pytest.raises(NotHeldError):
        hero.achievements.revoke(user, "points", reason="again")
    assert [type(e).__name__ for e in stored_domain_events()] == ["Unlocked", "Revoked"]


@pytest.mark.django_db
def test_the_ledger_refuses_to_revoke_what_is_not_held_with_a_hero_error(
    backend: Backend, make_user: Any
) -> None:
    # A user who holds nothing.
    user = make_user()

    # Revoking through the ledger itself, below hero.achievements.revoke().
    with pytest.raises(HeroError) as raised:
        get_ledger().revoke(str(user.pk), "points", reason="x", actor=None)

    # The same error revoke() raises, and nothing was stored.
    assert isinstance(raised.value, NotHeldError)
    assert "Nothing was written" in str(raised.value)
    assert stored_domain_events() == []


@pytest.mark.django_db
def test_revoke_checks_its_arguments(backend: Backend, make_user: Any) -> None:
    user = make_user()
    with pytest.raises(UnknownAchievement, match="'nope'"):
        hero.achievements.revoke(user, "nope", reason="x")
    with pytest.raises(InvalidRevocation, match="needs a reason"):
        hero.achievements.revoke(user, "points", reason="  ")
    assert stored_domain_events() == []


@pytest.mark.django_db(transaction=True)
def test_revoked_signal_after_commit_only(backend: Backend, make_user: Any) -> None:
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    received: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        received.append(kwargs)

    achievement_revoked.connect(receiver)
    try:
        with pytest.raises(RuntimeError), transaction.atomic(using=backend.alias):
            hero.achievements.revoke(user, "points", reason="rolled back")
            raise RuntimeError
        assert received == [] and holds(backend.alias, user, "points") == 1
        hero.achievements.revoke(user, "points", reason="for real", actor="moderator")
    finally:
        achievement_revoked.disconnect(receiver)

    (kwargs,) = received
    assert (kwargs["level"], kwargs["reason"], kwargs["actor"]) == (
        1,
        "for real",
        "moderator",
    )


@pytest.mark.django_db
def test_revoke_when_unmet_takes_it_back_and_gives_it_again(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    unlock = hero.achievements.unlock

    assert unlock("rank_changed", user=user, rank=5) == [Outcome("top_ten", 1, None)]
    assert unlock("rank_changed", user=user, rank=7) == []
    assert unlock("rank_changed", user=user, rank=30) == []  # revoked, not returned
    assert holds(backend.alias, user, "top_ten") is None
    unlock("rank_changed", user=user, rank=40)  # not held: nothing to revoke
    assert unlock("rank_changed", user=user, rank=2) == [Outcome("top_ten", 1, None)]

    names = [type(e).__name__ for e in stored_domain_events()]
    assert names == ["Unlocked", "Revoked", "Unlocked"]
    revoked = [e for e in hero.achievements.history(user) if e.kind == "revoked"]
    assert revoked[0].reason == "requirements no longer met (rank_changed)"


@pytest.mark.django_db
def test_sticky_is_the_default(backend: Backend, make_user: Any) -> None:
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    hero.achievements.unlock("score_changed", user=user, points=0)
    assert holds(backend.alias, user, "points") == 1
