"""hero.achievements.grant(): an award by hand, recorded as a ``Granted`` event
with its reason and actor, held like an unlock or an upgrade."""

from __future__ import annotations

import io
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import transaction

import hero
from hero.events import Outcome, UserAchievement
from hero.exceptions import (
    AlreadyHeldError,
    HeroError,
    InvalidGrant,
    InvalidLevel,
    InvalidUser,
    UnknownAchievement,
)
from hero.ledger import get_ledger
from hero.models import (
    AchievementCount,
    AchievementUnlocked,
    LedgerEntry,
    StoredEvent,
)
from hero.projections.rebuild import rebuild
from hero.projections.verify import verify
from hero.signals import achievement_unlocked, achievement_upgraded
from hero.visibility import notices
from tests.conftest import Backend, stored_domain_events
from tests.test_revocation import holds


def holders(alias: str, achievement_id: str) -> dict[int, int]:
    counts = AchievementCount.objects.using(alias).holders([achievement_id])
    return {level: n for (_, level), n in counts.items() if n}


@pytest.mark.django_db
def test_granting_unlocks_with_the_reason_and_actor_everywhere(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: ann holds nothing; a moderator grants her Points at Gold.
    ann, moderator = make_user("ann"), make_user("mod")

    # Act
    outcome = hero.achievements.grant(
        ann, "points", level=3, reason="contest winner", actor=moderator
    )

    # Assert: the outcome, the event, the read tables, the ledger, the history.
    actor = f"auth.user:{moderator.pk}"
    assert outcome == Outcome("points", 3, None)
    (event,) = stored_domain_events()
    assert isinstance(event, UserAchievement.Granted)
    stored = StoredEvent.objects.using(backend.alias).get()
    assert stored.topic == "hero:UserAchievement.Granted"
    assert (event.level, event.previous_level, event.reason, event.actor) == (
        3,
        None,
        "contest winner",
        actor,
    )
    assert holds(backend.alias, ann, "points") == 3
    assert holders(backend.alias, "points") == {3: 1}
    entry = LedgerEntry.objects.using(backend.alias).get(user=ann)
    assert (entry.kind, entry.level, entry.previous_level) == ("granted", 3, None)
    values = entry.personal_values()
    assert (values["reason"], values["actor"], entry.trigger) == (
        "contest winner",
        actor,
        "",
    )
    (history,) = hero.achievements.history(ann)
    assert (history.kind, history.level, history.reason, history.actor) == (
        "granted",
        3,
        "contest winner",
        actor,
    )
    assert hero.achievements.levels(ann) == {"points": 3}
    # A grant is news to the user, like an unlock.
    (notice,) = notices(ann)
    assert (notice.achievement_id, notice.granted, notice.upgraded) == (
        "points",
        True,
        False,
    )


@pytest.mark.django_db
def test_granting_a_higher_level_upgrades(backend: Backend, make_user: Any) -> None:
    # ann earned Bronze; she is granted Diamond.
    ann = make_user("ann")
    hero.achievements.unlock("score_changed", user=ann, points=10)

    outcome = hero.achievements.grant(ann, "points", level=4, reason="correction")

    assert outcome == Outcome("points", 4, 1) and outcome.upgraded
    assert holds(backend.alias, ann, "points") == 4
    assert holders(backend.alias, "points") == {4: 1}
    unlocked_at = AchievementUnlocked.objects.using(backend.alias).get(user=ann)
    assert unlocked_at.unlocked_at < unlocked_at.updated_at  # still since the unlock
    # What she earns later counts from the granted level.
    assert hero.achievements.unlock("score_changed", user=ann, points=1_000) == []
    assert [e.kind for e in hero.achievements.history(ann)] == ["unlocked", "granted"]


@pytest.mark.django_db
def test_granting_what_is_held_at_that_level_or_higher_writes_nothing(
    backend: Backend, make_user: Any
) -> None:
    ann = make_user("ann")
    hero.achievements.unlock("score_changed", user=ann, points=100)  # Silver

    for level in (1, 2):
        with pytest.raises(AlreadyHeldError, match="already holds 'points' at level 2"):
            hero.achievements.grant(ann, "points", level=level, reason="again")
    # The ledger itself refuses it with the same HeroError.
    with pytest.raises(HeroError):
        get_ledger().grant(str(ann.pk), "points", level=2, reason="x", actor=None)

    assert [type(e).__name__ for e in stored_domain_events()] == ["Unlocked"]


@pytest.mark.django_db
def test_grant_checks_its_arguments_before_writing(
    backend: Backend, make_user: Any
) -> None:
    ann = make_user("ann")

    with pytest.raises(InvalidUser, match=r"grant\(\)"):
        hero.achievements.grant(None, "points", reason="x")
    with pytest.raises(UnknownAchievement, match="'nope'"):
        hero.achievements.grant(ann, "nope", reason="x")
    for reason in ("", "   ", None):
        with pytest.raises(InvalidGrant, match="needs a reason"):
            hero.achievements.grant(ann, "points", reason=reason)  # type: ignore[arg-type]
    with pytest.raises(InvalidGrant, match="no NUL character"):
        hero.achievements.grant(ann, "points", reason="a\x00b")
    for level in (0, 5, "2", True, 2.0):
        with pytest.raises(
            InvalidLevel, match=r"levels of ACHIEVEMENT_LEVELS are \[1, 2, 3, 4\]"
        ):
            hero.achievements.grant(ann, "points", level=level, reason="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidGrant, match="actor"):
        hero.achievements.grant(ann, "points", reason="x", actor="x" * 256)

    assert stored_domain_events() == []


@pytest.mark.django_db
def test_without_a_level_grant_awards_the_lowest(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    settings.ACHIEVEMENT_LEVELS = ((5, "Five"), (2, "Two"), (9, "Nine"))
    ann = make_user("ann")

    assert hero.achievements.grant(ann, "points", reason="welcome") == Outcome(
        "points", 2, None
    )


@pytest.mark.django_db(transaction=True)
def test_grant_sends_the_usual_signals_after_commit_only(
    backend: Backend, make_user: Any
) -> None:
    ann = make_user("ann")
    received: list[tuple[str, int, int | None]] = []

    def unlocked(level: int, previous_level: int | None, **kwargs: Any) -> None:
        received.append(("unlocked", level, previous_level))

    def upgraded(level: int, previous_level: int | None, **kwargs: Any) -> None:
        received.append(("upgraded", level, previous_level))

    achievement_unlocked.connect(unlocked)
    achievement_upgraded.connect(upgraded)
    try:
        # Rolled back: nothing held, no signal.
        with pytest.raises(RuntimeError), transaction.atomic(using=backend.alias):
            hero.achievements.grant(ann, "points", level=1, reason="rolled back")
            raise RuntimeError
        assert received == [] and holds(backend.alias, ann, "points") is None

        hero.achievements.grant(ann, "points", level=1, reason="first")
        async_to_sync(hero.achievements.agrant)(ann, "points", level=3, reason="more")
    finally:
        achievement_unlocked.disconnect(unlocked)
        achievement_upgraded.disconnect(upgraded)

    assert received == [("unlocked", 1, None), ("upgraded", 3, 1)]


@pytest.mark.django_db
def test_granted_achievements_can_be_revoked_and_rebuilt_and_verified(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: grants, an unlock, an upgrade by grant, a revocation of a grant.
    ann, bob = make_user("ann"), make_user("bob")
    hero.achievements.grant(ann, "points", level=2, reason="a")
    hero.achievements.unlock("score_changed", user=bob, points=10)
    hero.achievements.grant(bob, "points", level=3, reason="b")
    hero.achievements.grant(ann, "comments_50", reason="c")
    hero.achievements.revoke(ann, "comments_50", reason="d")
    tables = (
        sorted(AchievementUnlocked.objects.values_list("user", "achievement", "level")),
        holders(backend.alias, "points"),
    )

    # Act: the projections' tables, from the store again.
    rebuild(backend.alias)

    # Assert: the same, and hero_verify agrees with them.
    assert tables == (
        sorted(AchievementUnlocked.objects.values_list("user", "achievement", "level")),
        holders(backend.alias, "points"),
    )
    assert tables[1] == {2: 1, 3: 1}
    assert verify(backend.alias).differences == []
    assert LedgerEntry.objects.filter(kind="granted").count() == 3


def test_the_granted_events_topic_is_stable() -> None:
    assert UserAchievement.Granted.TOPIC == "hero:UserAchievement.Granted"
    assert UserAchievement.Granted.class_version == 1


@pytest.mark.django_db
def test_hero_audit_shows_a_grant_with_its_reason_and_actor(
    backend: Backend, make_user: Any
) -> None:
    ann = make_user("ann")
    hero.achievements.unlock("score_changed", user=ann, points=10)
    hero.achievements.grant(ann, "points", level=3, reason="prize", actor="jury")
    out = io.StringIO()

    call_command("hero_audit", "ann", stdout=out)

    (line,) = [line for line in out.getvalue().splitlines() if " granted " in line]
    assert "1->3" in line and line.endswith("reason: prize; by jury")
