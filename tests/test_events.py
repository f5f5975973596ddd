"""hero's events: stable topics, versions, and replay of older stored events."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import resolve_topic
from freezegun import freeze_time

from hero.events import TriggerLog, UserAchievement, user_achievement_id
from hero.exceptions import HeroError, NotHeldError
from hero.ledger import get_ledger
from tests.conftest import Backend


def test_topics_are_explicit_and_resolve_to_the_classes() -> None:
    expected = {
        "hero:UserAchievement": UserAchievement,
        "hero:UserAchievement.Unlocked": UserAchievement.Unlocked,
        "hero:UserAchievement.LevelUpgraded": UserAchievement.LevelUpgraded,
        "hero:TriggerLog": TriggerLog,
        "hero:TriggerLog.Triggered": TriggerLog.Triggered,
    }
    for topic, cls in expected.items():
        assert resolve_topic(topic) is cls
        assert cls.TOPIC == topic


def test_aggregate_ids_are_deterministic_and_distinct() -> None:
    assert user_achievement_id("1", "a") == user_achievement_id("1", "a")
    assert user_achievement_id("1", "a") != user_achievement_id("2", "a")
    # Ids cannot collide through where a separator falls.
    assert user_achievement_id("1:a", "b") != user_achievement_id("1", "a:b")


# An Unlocked event as version 1 of the schema stored it (before awarded_at).
UNLOCKED_V1 = (
    b'{"originator_id":{"_type_":"uuid_hex","_data_":"%(id)s"},'
    b'"originator_version":1,'
    b'"timestamp":{"_type_":"datetime_iso","_data_":"2026-05-06T07:08:09+00:00"},'
    b'"user_pk":"%(user)s","achievement_id":"points","level":2,"previous_level":null,'
    b'"trigger":"score_changed","state":{"points":100}}'
)


@pytest.mark.django_db
def test_a_version_1_unlocked_event_replays_after_upcasting(
    backend: Backend, make_user: Any
) -> None:
    user_pk = str(make_user().pk)
    ledger = get_ledger()
    aggregate_id: UUID = user_achievement_id(user_pk, "points")
    ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=aggregate_id,
                originator_version=1,
                topic="hero:UserAchievement.Unlocked",
                state=UNLOCKED_V1
                % {b"id": aggregate_id.hex.encode(), b"user": user_pk.encode()},
            )
        ]
    )

    aggregate: Any = ledger.repository.get(aggregate_id)

    recorded = dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert (aggregate.user_pk, aggregate.achievement_id, aggregate.level) == (
        user_pk,
        "points",
        2,
    )
    assert (
        aggregate.unlocked_at == recorded
    )  # awarded_at defaults to when it was recorded
    # Deciding on the replayed aggregate appends a version 2 event after it.
    outcome = aggregate.award(3, trigger="score_changed", state={})
    ledger.save(aggregate)
    assert outcome is not None and outcome.previous_level == 2
    (stored,) = ledger.recorder.select_events(aggregate_id, gt=1)
    assert b'"class_version":2' in stored.state


def test_awarded_at_can_differ_from_when_the_event_was_recorded() -> None:
    aggregate = UserAchievement.start("7", "points")
    earlier = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    aggregate.award(1, trigger="backfill", state={}, awarded_at=earlier)
    (event,) = aggregate.collect_events()
    assert event.awarded_at == earlier and event.timestamp > earlier
    assert aggregate.unlocked_at == earlier


def at(hour: int, day: int = 1) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, tzinfo=dt.UTC)


def effective_times(aggregate: UserAchievement) -> list[tuple[str, dt.datetime]]:
    """(event class, when it took effect) of the aggregate's new events."""
    return [
        (type(e).__name__, getattr(e, "awarded_at", e.timestamp))
        for e in aggregate.collect_events()
    ]


def test_an_event_never_takes_effect_before_the_one_before_it() -> None:
    # Arrange: unlocked at noon.
    aggregate = UserAchievement.start("7", "points")
    with freeze_time(at(12)):
        aggregate.award(1, trigger="score_changed", state={})

    # Act: the clock is set back an hour, then each kind of event follows.
    with freeze_time(at(11)):
        aggregate.award(2, trigger="score_changed", state={})
        aggregate.progress(3, 5, completion_level=1, trigger="read", state={})
        aggregate.revoke(reason="cheating", actor=None)
        aggregate.award(1, trigger="score_changed", state={})

    # Assert: each takes effect at noon, when the unlock did, not at 11.
    assert effective_times(aggregate) == [
        ("Unlocked", at(12)),
        ("LevelUpgraded", at(12)),
        ("Progressed", at(12)),
        ("Revoked", at(12)),
        ("Unlocked", at(12)),
    ]
    # Only when it was recorded says 11 (the clock as it was).
    assert aggregate.unlocked_at == at(12)


def test_a_backfilled_time_before_the_last_event_takes_effect_at_that_event() -> None:
    # Arrange: unlocked on day 2.
    aggregate = UserAchievement.start("7", "points")
    with freeze_time(at(12, day=2)):
        aggregate.award(1, trigger="score_changed", state={})

    # Act: a backfill says level 2 was earned on day 1, before the unlock.
    with freeze_time(at(12, day=5)):
        aggregate.award(2, trigger="backfill", state={}, awarded_at=at(12, day=1))
        # ... and level 3 on day 3, after it: kept as given.
        aggregate.award(3, trigger="backfill", state={}, awarded_at=at(12, day=3))

    # Assert: the upgrade to 2 takes effect with the unlock, never before it.
    assert effective_times(aggregate) == [
        ("Unlocked", at(12, day=2)),
        ("LevelUpgraded", at(12, day=2)),
        ("LevelUpgraded", at(12, day=3)),
    ]


def test_revoking_what_the_aggregate_does_not_hold_raises_hero_s_not_held_error() -> (
    None
):
    # A user's aggregate with no events: nothing is held.
    aggregate = UserAchievement.start("7", "points")

    # The domain refuses with the public error, the one revoke() documents.
    with pytest.raises(NotHeldError, match="does not hold 'points'") as raised:
        aggregate.revoke(reason="cheating", actor=None)

    assert isinstance(raised.value, HeroError)
    assert isinstance(raised.value, LookupError)
    assert aggregate.collect_events() == []
