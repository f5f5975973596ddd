"""hero.achievements.unlock(): decisions, events, errors, signals, transactions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from freezegun import freeze_time

import hero
from hero import AchievementBase, AchievementUnlocked
from hero.events import Outcome, UserAchievement
from hero.exceptions import (
    InvalidEventName,
    InvalidLevel,
    InvalidState,
    InvalidUnlockResult,
    InvalidUser,
)
from hero.signals import achievement_unlocked, achievement_upgraded
from tests.conftest import Backend, stored_domain_events


def award_events() -> list[Any]:
    return [
        e
        for e in stored_domain_events()
        if isinstance(e, (UserAchievement.Unlocked, UserAchievement.LevelUpgraded))
    ]


@pytest.mark.django_db
def test_the_readme_example_unlocks_comments_50(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()

    outcomes = hero.achievements.unlock("points_awarded", user=user)

    assert outcomes == [Outcome("comments_50", level=1, previous_level=None)]
    (event,) = award_events()
    assert isinstance(event, UserAchievement.Unlocked)
    assert (event.user_pk, event.achievement_id, event.level) == (
        str(user.pk),
        "comments_50",
        1,
    )
    assert event.trigger == "points_awarded"


@pytest.mark.django_db
def test_first_unlock_then_upgrade_then_nothing_for_same_or_lower_level(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    unlock = hero.achievements.unlock

    assert unlock("score_changed", user=user, points=10) == [Outcome("points", 1, None)]
    assert unlock("score_changed", user=user, points=1_000) == [Outcome("points", 3, 1)]
    assert unlock("score_changed", user=user, points=1_000) == []
    assert unlock("score_changed", user=user, points=100) == []

    kinds = [(type(e).__name__, e.level, e.previous_level) for e in award_events()]
    assert kinds == [("Unlocked", 1, None), ("LevelUpgraded", 3, 1)]
    # One aggregate per (user, achievement): both events share it, versions 1 and 2.
    assert {e.originator_id for e in award_events()} == {
        UserAchievement.start(str(user.pk), "points").id
    }
    assert [e.originator_version for e in award_events()] == [1, 2]


@pytest.mark.django_db
def test_users_and_achievements_are_kept_apart(
    backend: Backend, make_user: Any
) -> None:
    ann, bob = make_user("ann"), make_user("bob")

    hero.achievements.unlock("score_changed", user=ann, points=100, night=True)
    hero.achievements.unlock("score_changed", user=bob, points=10)

    held = {(e.user_pk, e.achievement_id, e.level) for e in award_events()}
    assert held == {
        (str(ann.pk), "points", 2),
        (str(ann.pk), "night_owl", 1),
        (str(bob.pk), "points", 1),
    }


@pytest.mark.django_db
def test_calls_that_award_nothing_touch_no_database(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    with CaptureQueriesContext(connections[backend.alias]) as queries:
        assert hero.achievements.unlock("score_changed", user=user, points=5) == []
        assert hero.achievements.unlock("nobody_listens", user=user) == []
    assert len(queries) == 0


@pytest.mark.django_db
def test_events_record_who_what_why_and_when(backend: Backend, make_user: Any) -> None:
    user, other = make_user(), make_user()

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    with freeze_time("2026-03-04 05:06:07"):
        hero.achievements.unlock(
            "score_changed",
            user=user,
            points=10,
            referrer=other,
            at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
            tags={"a", "b"} and ["a"],
            thing=Opaque(),
            ratio=float("nan"),
        )

    (event,) = award_events()
    assert event.user_pk == str(user.pk)
    assert event.timestamp == dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    assert event.state == {
        "points": 10,
        "referrer": f"auth.user:{other.pk}",
        "at": "2026-01-02T00:00:00+00:00",
        "tags": ["a"],
        "thing": "<Opaque>",
        "ratio": "nan",
    }


@pytest.mark.django_db
def test_a_level_not_in_achievement_levels_is_refused(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    for level in (7, 0, "2", True, 2.0):
        with pytest.raises(InvalidLevel) as error:
            hero.achievements.unlock("reports", user=user, level=level)
        assert "'awards_first'" in str(error.value)
        assert "1 (Bronze), 2 (Silver), 3 (Gold), 4 (Diamond)" in str(error.value)
    assert award_events() == []


@pytest.mark.django_db
def test_custom_levels_are_honoured(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    settings.ACHIEVEMENT_LEVELS = ((1, "Wood"), (5, "Stone"))
    user = make_user()
    assert hero.achievements.unlock("reports", user=user, level=5) == [
        Outcome("awards_first", 5, None)
    ]
    with pytest.raises(InvalidLevel, match=r"1 \(Wood\), 5 \(Stone\)"):
        hero.achievements.unlock("reports", user=user, level=2)


@pytest.mark.django_db
def test_an_unlock_that_raises_propagates_and_nothing_is_written(
    backend: Backend, make_user: Any
) -> None:
    # AwardsFirst answers with a level before Explodes raises: the call is all or nothing.
    with pytest.raises(RuntimeError, match="unlock\\(\\) failed"):
        hero.achievements.unlock("explode", user=make_user())
    assert award_events() == []


@pytest.mark.django_db
def test_an_unlock_returning_something_else_is_a_clear_error(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    @hero.achievements.register
    class ReturnsInt(AchievementBase):
        id = "returns_int"
        title = "Returns an int"
        events = ["int_event"]

        def unlock(self, **state: Any) -> Any:
            return 3

    with pytest.raises(
        InvalidUnlockResult, match="return AchievementUnlocked\\(level=N\\)"
    ):
        hero.achievements.unlock("int_event", user=make_user())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs the user"),
        ({"user": None}, "needs the user"),
        ({"user": AnonymousUser()}, "anonymous user"),
        ({"user": 42}, "needs a auth.User instance"),
    ],
    ids=["missing", "none", "anonymous", "not-a-user"],
)
def test_bad_users_are_refused(
    backend: Backend, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidUser, match=message):
        hero.achievements.unlock("points_awarded", **kwargs)
    assert award_events() == []


@pytest.mark.django_db
def test_an_unsaved_user_is_refused(backend: Backend, django_user_model: Any) -> None:
    with pytest.raises(InvalidUser, match="not saved yet"):
        hero.achievements.unlock("points_awarded", user=django_user_model(username="x"))


@pytest.mark.parametrize("event", [None, 42, "", b"points_awarded"])
def test_event_names_must_be_strings(event: Any) -> None:
    with pytest.raises(InvalidEventName, match="non-empty string"):
        hero.achievements.unlock(event, user=AnonymousUser())


@pytest.mark.django_db
def test_an_event_name_is_refused_even_when_an_achievement_listens_to_it(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    # Arrange: an achievement listening to a name unlock() cannot record (a NUL
    # character; system check hero.E004 reports it, the registry keeps it).
    event = "points\x00awarded"

    @hero.achievements.register
    class ListensToNul(AchievementBase):
        id = "listens_to_nul"
        title = "Listens to a NUL"
        events = [event]

        def unlock(self, **state: Any) -> Any:
            return AchievementUnlocked(level=1)

    # Act and assert: refused as a name nothing listens to is, nothing written;
    # the registry's names checked once leave it out.
    with pytest.raises(InvalidEventName, match="NUL character"):
        hero.achievements.unlock(event, user=make_user())
    assert award_events() == []
    assert event not in hero.achievements.registry.checked_listeners


@pytest.mark.django_db
def test_huge_state_is_refused_and_nothing_written(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    settings.HERO_MAX_STATE_BYTES = 1_000
    with pytest.raises(InvalidState, match="largest value is 'essay'"):
        hero.achievements.unlock(
            "score_changed", user=make_user(), points=10, essay="x" * 2_000
        )
    assert award_events() == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_keeps_no_event_and_sends_no_signal(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    received: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        received.append(kwargs)

    achievement_unlocked.connect(receiver)
    try:
        with pytest.raises(ZeroDivisionError), transaction.atomic(using=backend.alias):
            assert hero.achievements.unlock("score_changed", user=user, points=10)
            1 / 0  # noqa: B018
    finally:
        achievement_unlocked.disconnect(receiver)

    assert award_events() == []
    assert received == []


@pytest.mark.django_db(transaction=True)
def test_signals_are_sent_after_commit(backend: Backend, make_user: Any) -> None:
    user = make_user()
    received: list[tuple[str, dict[str, Any]]] = []

    def on_unlocked(**kwargs: Any) -> None:
        received.append(("unlocked", kwargs))

    def on_upgraded(**kwargs: Any) -> None:
        received.append(("upgraded", kwargs))

    achievement_unlocked.connect(on_unlocked)
    achievement_upgraded.connect(on_upgraded)
    try:
        with transaction.atomic(using=backend.alias):
            hero.achievements.unlock("score_changed", user=user, points=10)
            assert received == []  # not before the commit
        hero.achievements.unlock("score_changed", user=user, points=100)
    finally:
        achievement_unlocked.disconnect(on_unlocked)
        achievement_upgraded.disconnect(on_upgraded)

    assert [(kind, kw["level"], kw["previous_level"]) for kind, kw in received] == [
        ("unlocked", 1, None),
        ("upgraded", 2, 1),
    ]
    _kind, kwargs = received[0]
    assert kwargs["user"] == user
    assert kwargs["achievement"].id == "points"
    assert kwargs["sender"].__name__ == "Points"


@pytest.mark.django_db
def test_trigger_log_records_every_call_when_switched_on(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    from hero.events import TriggerLog

    settings.HERO_RECORD_TRIGGERS = True
    user = make_user()

    hero.achievements.unlock("score_changed", user=user, points=5)  # awards nothing
    hero.achievements.unlock("nobody_listens", user=user, page="/home")
    hero.achievements.unlock("score_changed", user=user, points=10)  # awards

    triggers = [
        e for e in stored_domain_events() if isinstance(e, TriggerLog.Triggered)
    ]
    assert [(t.trigger, t.state, t.originator_version) for t in triggers] == [
        ("score_changed", {"points": 5}, 1),
        ("nobody_listens", {"page": "/home"}, 2),
        ("score_changed", {"points": 10}, 3),
    ]
    assert len(award_events()) == 1


@pytest.mark.django_db
def test_trigger_log_is_off_by_default(backend: Backend, make_user: Any) -> None:
    hero.achievements.unlock("nobody_listens", user=make_user())
    assert stored_domain_events() == []


@pytest.mark.django_db
def test_a_lost_race_is_decided_again(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hero.ledger import Ledger, get_ledger

    user = make_user()
    ledger = get_ledger()
    original = Ledger.user_achievement
    raced: list[bool] = []

    # Another process unlocks level 1 after we loaded the aggregate: we load
    # it as it was before, blank, the first time.
    rival = original(ledger, str(user.pk), "points")
    rival.award(1, trigger="rival", state={})
    ledger.save(rival)

    def stale_then_fresh(
        self: Ledger, user_pk: str, achievement_id: str, read: Any = None
    ) -> Any:
        if not raced:
            raced.append(True)
            return UserAchievement.start(user_pk, achievement_id)
        return original(self, user_pk, achievement_id, read)

    monkeypatch.setattr(Ledger, "user_achievement", stale_then_fresh)
    outcomes = hero.achievements.unlock("score_changed", user=user, points=100)

    # Our first decision (Unlocked at 2) conflicted; decided again: an upgrade 1 -> 2.
    assert outcomes == [Outcome("points", 2, 1)]
    kinds = [(type(e).__name__, e.level, e.trigger) for e in award_events()]
    assert kinds == [("Unlocked", 1, "rival"), ("LevelUpgraded", 2, "score_changed")]
    assert ledger is get_ledger()


@pytest.mark.django_db
def test_a_call_on_several_achievements_reads_them_in_one_statement(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10, night=True)

    with CaptureQueriesContext(connections[backend.alias]) as queries:
        outcomes = hero.achievements.unlock(
            "score_changed", user=user, points=100, night=True
        )

    # Both aggregates were read in one statement: points upgraded, night_owl
    # held already.
    assert outcomes == [Outcome("points", 2, 1)]
    reads = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT originator_id")
    ]
    assert len(reads) == 1 and " IN (" in reads[0], reads
    kinds = [(type(e).__name__, e.achievement_id, e.level) for e in award_events()]
    assert sorted(kinds) == [
        ("LevelUpgraded", "points", 2),
        ("Unlocked", "night_owl", 1),
        ("Unlocked", "points", 1),
    ]


def test_unlocked_is_importable_from_hero_and_hero_models() -> None:
    from hero.models import AchievementUnlocked as FromModels

    assert AchievementUnlocked is FromModels
    assert AchievementUnlocked(level=2).level == 2
