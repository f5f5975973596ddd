"""Repeatable achievements: awarded once per key, as often as it happens."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse

import hero
import hero.backfill
from hero import AchievementBase, AchievementUnlocked
from hero.events import Outcome, Revocation, UserAchievement
from hero.exceptions import (
    InvalidBackfill,
    InvalidGrant,
    InvalidRevocation,
    InvalidUnlockResult,
    NotHeldError,
)
from hero.ledger import get_ledger
from hero.models import Achievement, AchievementCount, LedgerEntry
from hero.models import AchievementUnlocked as Holding
from hero.projections.verify import verify
from hero.queries import Rarity
from hero.signals import achievement_revoked, achievement_unlocked
from hero.store.transactions import VersionConflict
from tests.conftest import Backend, stored_domain_events


@pytest.fixture
def nice_answer(isolated_registry: Any) -> type[AchievementBase]:
    """A repeatable achievement: one award per answer with a score of 10."""

    @hero.achievements.register
    class NiceAnswer(AchievementBase):
        id = "nice_answer"
        title = "Nice answer"
        events = ["answer_scored"]
        repeatable = True

        def unlock(self, **state: Any) -> AchievementUnlocked | None:
            if state["score"] < 10:
                return None
            level = 2 if state["score"] >= 25 else 1
            return AchievementUnlocked(level=level, key=f"answer:{state['answer']}")

    return NiceAnswer


def held(alias: str, user: Any) -> tuple[int, int] | None:
    row = Holding.objects.using(alias).filter(user=user, achievement="nice_answer")
    found = row.values_list("level", "times").first()
    return None if found is None else (found[0], found[1])


def holders(alias: str) -> dict[int, int]:
    counts = AchievementCount.objects.using(alias).holders(["nice_answer"])
    return {level: n for (_, level), n in counts.items() if n}


@pytest.mark.django_db
def test_each_key_is_awarded_once_and_the_holding_counts_them(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    # Arrange: ann's answers 1 and 2 score, answer 1 twice.
    ann = make_user("ann")

    # Act
    first = hero.achievements.unlock("answer_scored", user=ann, answer=1, score=12)
    again = hero.achievements.unlock("answer_scored", user=ann, answer=1, score=14)
    second = hero.achievements.unlock("answer_scored", user=ann, answer=2, score=11)

    # Assert: two awards, one holder, the same key never twice.
    assert first == [Outcome("nice_answer", 1, None, "answer:1", 1)]
    assert again == []
    assert second == [Outcome("nice_answer", 1, 1, "answer:2", 2)]
    assert not second[0].upgraded
    assert held(backend.alias, ann) == (1, 2)
    assert holders(backend.alias) == {1: 1}
    names = [type(e).__name__ for e in stored_domain_events()]
    assert names == ["Unlocked", "Repeated"]


@pytest.mark.django_db
def test_a_higher_award_raises_the_level_and_rarity_counts_holders(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    # Arrange: ann has three awards, bob one.
    ann, bob = make_user("ann"), make_user("bob")
    for answer in (1, 2):
        hero.achievements.unlock("answer_scored", user=ann, answer=answer, score=10)
    hero.achievements.unlock("answer_scored", user=bob, answer=9, score=10)

    # Act: ann's third award is at level 2.
    (outcome,) = hero.achievements.unlock("answer_scored", user=ann, answer=3, score=30)

    # Assert: an upgrade with a key; two holders, not four awards.
    assert (outcome.level, outcome.previous_level, outcome.upgraded) == (2, 1, True)
    assert held(backend.alias, ann) == (2, 3)
    assert holders(backend.alias) == {1: 1, 2: 1}
    rarity = Achievement.objects.using(backend.alias).rarity("nice_answer", level=1)
    assert rarity == Rarity("nice_answer", 1, 2, 2)


@pytest.mark.django_db
def test_racing_awards_of_one_key_record_one(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    # Arrange: two writers loaded the same aggregate and decided on one key.
    ann = make_user("ann")
    ledger = get_ledger()
    first = ledger.user_achievement(str(ann.pk), "nice_answer")
    second = ledger.user_achievement(str(ann.pk), "nice_answer")
    first.award(1, trigger="t", state={}, key="answer:1")
    second.award(1, trigger="t", state={}, key="answer:1")
    ledger.record([first])

    # Act / Assert: the database refuses the second at the same version, and
    # deciding again on the reloaded aggregate awards nothing.
    with pytest.raises(VersionConflict):
        ledger.record([second])
    reloaded = ledger.user_achievement(str(ann.pk), "nice_answer")
    assert reloaded.award(1, trigger="t", state={}, key="answer:1") is None
    assert reloaded.times == 1


@pytest.mark.django_db
def test_keys_are_required_of_repeatable_achievements_and_refused_of_others(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    @hero.achievements.register
    class KeyedOnce(AchievementBase):
        id = "keyed_once"
        title = "Keyed once"
        events = ["keyed"]

        def unlock(self, **state: Any) -> AchievementUnlocked:
            return AchievementUnlocked(level=1, key="answer:1")

    @hero.achievements.register
    class Unkeyed(AchievementBase):
        id = "unkeyed"
        title = "Unkeyed"
        events = ["unkeyed"]
        repeatable = True

        def unlock(self, **state: Any) -> AchievementUnlocked:
            return AchievementUnlocked(level=1, key=state.get("key"))

    ann = make_user("ann")
    with pytest.raises(InvalidUnlockResult, match="'keyed_once' is not repeatable"):
        hero.achievements.unlock("keyed", user=ann)
    with pytest.raises(InvalidUnlockResult, match="must name each award with a key"):
        hero.achievements.unlock("unkeyed", user=ann)
    with pytest.raises(InvalidUnlockResult, match="a key must be a non-empty string"):
        hero.achievements.unlock("unkeyed", user=ann, key="")
    assert stored_domain_events() == []


@pytest.mark.django_db
def test_history_and_hero_audit_list_each_award_with_its_key(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    ann = make_user("ann")
    for answer in (1, 2):
        hero.achievements.unlock("answer_scored", user=ann, answer=answer, score=10)

    entries = hero.achievements.history(ann)
    out = io.StringIO()
    call_command("hero_audit", "ann", stdout=out)
    as_json = io.StringIO()
    call_command("hero_audit", "ann", "--format", "json", stdout=as_json)

    assert [(e.kind, e.key) for e in entries] == [
        ("unlocked", "answer:1"),
        ("repeated", "answer:2"),
    ]
    assert "key answer:1" in out.getvalue() and "key answer:2" in out.getvalue()
    data = json.loads(as_json.getvalue())
    assert [h["key"] for h in data["history"]] == ["answer:1", "answer:2"]
    assert data["levels"] == {"nice_answer": 1}


@pytest.mark.django_db
def test_revoking_one_key_keeps_the_others_and_the_key_is_spent(
    backend: Backend,
    make_user: Any,
    nice_answer: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Arrange: three awards, the third at level 2.
    ann, mod = make_user("ann"), make_user("mod")
    for answer, score in ((1, 10), (2, 10), (3, 30)):
        hero.achievements.unlock("answer_scored", user=ann, answer=answer, score=score)
    revoked: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        revoked.append(kwargs)

    achievement_revoked.connect(receiver)
    try:
        # Act: take away the level 2 award, then award its key again.
        with django_capture_on_commit_callbacks(using=backend.alias, execute=True):
            revocation = hero.achievements.revoke(
                ann, "nice_answer", reason="vote fraud", actor=mod, key="answer:3"
            )
        again = hero.achievements.unlock("answer_scored", user=ann, answer=3, score=30)
    finally:
        achievement_revoked.disconnect(receiver)

    # Assert: two awards left at level 1; the key is not awarded again.
    assert revocation == Revocation(
        "nice_answer", 2, "vote fraud", f"auth.user:{mod.pk}", "answer:3"
    )
    assert again == []
    assert held(backend.alias, ann) == (1, 2)
    assert holders(backend.alias) == {1: 1}
    assert [r["key"] for r in revoked] == ["answer:3"]
    entry = LedgerEntry.objects.using(backend.alias).get(kind="revoked")
    assert (entry.personal_values()["key"], entry.level, entry.previous_level) == (
        "answer:3",
        1,
        2,
    )
    assert hero.achievements.levels(ann) == {"nice_answer": 1}
    assert verify(backend.alias).differences == []


@pytest.mark.django_db
def test_revoking_the_last_key_or_all_drops_the_holding(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    ann, bob = make_user("ann"), make_user("bob")
    hero.achievements.unlock("answer_scored", user=ann, answer=1, score=10)
    for answer in (2, 3):
        hero.achievements.unlock("answer_scored", user=bob, answer=answer, score=10)

    hero.achievements.revoke(ann, "nice_answer", reason="deleted", key="answer:1")
    hero.achievements.revoke(bob, "nice_answer", reason="banned")

    assert held(backend.alias, ann) is None and held(backend.alias, bob) is None
    assert holders(backend.alias) == {}
    assert hero.achievements.levels(ann) == hero.achievements.levels(bob) == {}
    with pytest.raises(NotHeldError, match="'answer:1'"):
        hero.achievements.revoke(ann, "nice_answer", reason="x", key="answer:1")
    # New keys are awarded again after everything was revoked; spent ones not.
    assert hero.achievements.unlock("answer_scored", user=bob, answer=2, score=10) == []
    (outcome,) = hero.achievements.unlock("answer_scored", user=bob, answer=4, score=10)
    assert (outcome.key, outcome.times, held(backend.alias, bob)) == (
        "answer:4",
        1,
        (1, 1),
    )
    assert verify(backend.alias).differences == []


@pytest.mark.django_db
def test_a_key_is_refused_by_revoke_and_grant_of_what_it_does_not_fit(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    ann = make_user("ann")
    hero.achievements.unlock("score_changed", user=ann, points=100)

    with pytest.raises(InvalidRevocation, match="'points' is not repeatable"):
        hero.achievements.revoke(ann, "points", reason="x", key="answer:1")
    with pytest.raises(InvalidGrant, match="'nice_answer' is repeatable"):
        hero.achievements.grant(ann, "nice_answer", reason="x")


@pytest.mark.django_db(transaction=True)
def test_a_signal_is_sent_per_award_with_its_key(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    ann = make_user("ann")
    sent: list[tuple[Any, ...]] = []

    def receiver(**kwargs: Any) -> None:
        sent.append((kwargs["level"], kwargs["key"], kwargs["times"]))

    achievement_unlocked.connect(receiver)
    try:
        for answer in (1, 1, 2):
            hero.achievements.unlock("answer_scored", user=ann, answer=answer, score=10)
    finally:
        achievement_unlocked.disconnect(receiver)

    assert sent == [(1, "answer:1", 1), (1, "answer:2", 2)]


@pytest.mark.django_db
def test_rebuild_and_verify_agree_with_the_awards(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    # Arrange: awards, an upgrade and a revocation of one key.
    ann, bob = make_user("ann"), make_user("bob")
    for answer, score in ((1, 10), (2, 30), (3, 10)):
        hero.achievements.unlock("answer_scored", user=ann, answer=answer, score=score)
    hero.achievements.unlock("answer_scored", user=bob, answer=7, score=10)
    hero.achievements.revoke(ann, "nice_answer", reason="x", key="answer:3")
    before = (held(backend.alias, ann), held(backend.alias, bob))

    # Act: rebuild, then damage the count of awards.
    call_command("hero_rebuild", "--batch-size", "2", stdout=io.StringIO())
    rebuilt = (held(backend.alias, ann), held(backend.alias, bob))
    healthy = verify(backend.alias).differences
    Holding.objects.using(backend.alias).filter(user=bob).update(times=5)

    # Assert
    assert before == rebuilt == ((2, 2), (1, 1))
    assert healthy == []
    assert verify(backend.alias).differences == [
        f"holdings: wrong times: user {bob.pk}, 'nice_answer' was awarded 5 times, "
        "the store says 1"
    ]


@pytest.mark.django_db
def test_backfill_awards_each_key_it_yields_once(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    ann = make_user("ann")

    @hero.achievements.register
    class Answered(AchievementBase):
        id = "answered"
        title = "Answered"
        repeatable = True

        def unlock(self, **state: Any) -> None:
            return None

        def backfill(self) -> Any:
            yield (ann.pk, 1, None, "answer:1")
            yield (ann.pk, 1, None, "answer:2")
            yield (ann.pk, 1, None, "answer:1")

    @hero.achievements.register
    class Keyless(AchievementBase):
        id = "keyless"
        title = "Keyless"
        repeatable = True

        def unlock(self, **state: Any) -> None:
            return None

        def backfill(self) -> Any:
            yield (ann.pk, 1)

    out = io.StringIO()
    call_command("hero_backfill", "answered", stdout=out)
    call_command("hero_backfill", "answered", stdout=out)

    row = Holding.objects.using(backend.alias).get(user=ann, achievement="answered")
    assert (row.level, row.times) == (1, 2)
    with pytest.raises(InvalidBackfill, match="must name each award with a key"):
        hero.backfill.backfill(hero.achievements.get("keyless"))


@pytest.mark.django_db
def test_pages_json_and_tags_show_how_many_times(
    backend: Backend, make_user: Any, nice_answer: Any, client: Any
) -> None:
    ann = make_user("ann")
    for answer in (1, 2, 3):
        hero.achievements.unlock("answer_scored", user=ann, answer=answer, score=10)
    client.force_login(ann)

    page = client.get(reverse("hero:mine")).content.decode()
    data = client.get(reverse("hero:api-mine")).json()
    detail = client.get(reverse("hero:api-detail", args=["nice_answer"])).json()

    assert "\N{MULTIPLICATION SIGN}3" in page
    by_id = {a["id"]: a for a in data["achievements"]}
    assert by_id["nice_answer"]["times"] == 3
    assert detail["times"] == 3


def test_an_unlocked_event_of_version_2_replays_with_no_key() -> None:
    state: dict[str, Any] = {"timestamp": 0}
    UserAchievement.Unlocked.upcast_v1_v2(state)
    UserAchievement.Unlocked.upcast_v2_v3(state)
    assert state == {"timestamp": 0, "awarded_at": 0, "key": None}
