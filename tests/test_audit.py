"""A user's history and point-in-time levels, read from the store; hero_audit."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test.utils import CaptureQueriesContext
from freezegun import freeze_time

import hero
from hero.events import UserAchievement
from hero.ledger import get_ledger
from hero.models import AchievementUnlocked
from tests.conftest import Backend

UTC = dt.UTC


def day(n: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 3, n, hour, tzinfo=UTC)


def a_week_of_activity(make_user: Any) -> Any:
    """Unlock, upgrade, revoke, unlock again and make progress, day by day."""
    user, other = make_user("ann"), make_user("bob")
    with freeze_time(day(1)):
        hero.achievements.unlock("score_changed", user=user, points=10)
        hero.achievements.unlock("score_changed", user=other, points=10_000)
    with freeze_time(day(2)):
        hero.achievements.unlock("score_changed", user=user, points=100, night=True)
    with freeze_time(day(3)):
        hero.achievements.revoke(
            user, "points", reason="duplicate account", actor="mod"
        )
    with freeze_time(day(4)):
        hero.achievements.unlock("score_changed", user=user, points=1_000)
        hero.achievements.unlock("chapter_read", user=user, chapters=3)
    return user


@pytest.mark.django_db
def test_history_is_what_the_events_say(backend: Backend, make_user: Any) -> None:
    user = a_week_of_activity(make_user)

    entries = hero.achievements.history(user)

    summary = [
        (e.kind, e.achievement_id, e.level, e.previous_level, e.event) for e in entries
    ]
    assert summary == [
        ("unlocked", "points", 1, None, "score_changed"),
        ("upgraded", "points", 2, 1, "score_changed"),
        ("unlocked", "night_owl", 1, None, "score_changed"),
        ("revoked", "points", None, 2, ""),
        ("unlocked", "points", 3, None, "score_changed"),
        ("progressed", "bookworm", None, None, "chapter_read"),
    ]
    assert [e.occurred_at for e in entries] == [
        day(1),
        day(2),
        day(2),
        day(3),
        day(4),
        day(4),
    ]
    assert all(e.occurred_at and e.occurred_at.tzinfo for e in entries)
    assert entries[1].state == {"points": 100, "night": True}
    assert (entries[3].reason, entries[3].actor) == ("duplicate account", "mod")
    assert entries[5].steps == 3 and entries[5].total == 5
    positions = [e.position for e in entries]
    assert positions == sorted(positions)
    assert [e.kind for e in hero.achievements.history(user, "points")] == [
        "unlocked",
        "upgraded",
        "revoked",
        "unlocked",
    ]


@pytest.mark.django_db
def test_levels_now_and_at_moments_in_the_past(
    backend: Backend, make_user: Any
) -> None:
    user = a_week_of_activity(make_user)
    levels = hero.achievements.levels

    assert levels(user) == {"points": 3, "night_owl": 1}
    assert levels(user, at=day(1, 0)) == {}
    assert levels(user, at=day(1)) == {"points": 1}
    assert levels(user, at=day(2, 23)) == {"points": 2, "night_owl": 1}
    assert levels(user, at=day(3, 23)) == {"night_owl": 1}
    assert levels(user, at=day(30)) == {"points": 3, "night_owl": 1}


@pytest.mark.django_db
def test_a_clock_set_back_never_shows_an_upgrade_before_its_unlock(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: points unlocked at noon; then the clock is set back an hour, and
    # the user reaches the next level.
    user = make_user()
    with freeze_time(day(1, 12)):
        hero.achievements.unlock("score_changed", user=user, points=10)

    # Act
    with freeze_time(day(1, 11)):
        hero.achievements.unlock("score_changed", user=user, points=100)

    # Assert: the upgrade took effect at noon, with the unlock (it was recorded
    # at 11, by the clock), so at 11:30 the user held nothing, from noon level 2.
    history = hero.achievements.history(user)
    assert [(e.kind, e.occurred_at, e.recorded_at) for e in history] == [
        ("unlocked", day(1, 12), day(1, 12)),
        ("upgraded", day(1, 12), day(1, 11)),
    ]
    levels = hero.achievements.levels
    assert levels(user, at=day(1, 11).replace(minute=30)) == {}
    assert levels(user, at=day(1, 12)) == {"points": 2}
    holding = AchievementUnlocked.objects.using(backend.alias).get(user=user)
    assert (holding.unlocked_at, holding.updated_at) == (day(1, 12), day(1, 12))


@pytest.mark.django_db
def test_levels_replays_a_history_up_to_its_first_event_after_the_moment(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: events as a release without the time rule could store them, an
    # upgrade that says it took effect a day before its unlock.
    user = make_user()
    aggregate = UserAchievement.start(str(user.pk), "points")
    common = {"user_pk": str(user.pk), "achievement_id": "points", "state": {}}
    aggregate.trigger_event(
        UserAchievement.Unlocked,
        timestamp=day(2),
        awarded_at=day(2),
        level=1,
        previous_level=None,
        trigger="score_changed",
        key=None,
        **common,
    )
    aggregate.trigger_event(
        UserAchievement.LevelUpgraded,
        timestamp=day(3),
        awarded_at=day(1),
        level=2,
        previous_level=1,
        trigger="backfill",
        **common,
    )
    get_ledger().save(aggregate)

    # Act / assert: before the unlock, nothing is held (not the upgrade alone);
    # from the unlock on, both count.
    assert hero.achievements.levels(user, at=day(1, 18)) == {}
    assert hero.achievements.levels(user, at=day(2)) == {"points": 2}


@pytest.mark.django_db
def test_history_with_the_trigger_log(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    settings.HERO_RECORD_TRIGGERS = True
    user = make_user()
    hero.achievements.unlock("page_viewed", user=user, path="/")
    hero.achievements.unlock("score_changed", user=user, points=10)

    kinds = [(e.kind, e.event) for e in hero.achievements.history(user)]
    assert kinds == [
        ("triggered", "page_viewed"),
        ("unlocked", "score_changed"),
        ("triggered", "score_changed"),
    ]


@pytest.mark.django_db
def test_cost_follows_the_users_own_events(backend: Backend, make_user: Any) -> None:
    # Reading one user's history reads the store by the user's aggregates only
    # (their events, then the keys their events hold), whatever else it holds.
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    for _ in range(30):
        hero.achievements.unlock("score_changed", user=make_user(), points=10_000)
    with CaptureQueriesContext(connections[backend.alias]) as queries:
        entries = hero.achievements.history(user)
    assert len(entries) == 1
    store_reads = [q["sql"] for q in queries if "hero_stored_event" in q["sql"]]
    assert len(store_reads) == 2
    assert all("originator_id IN" in sql for sql in store_reads)
    assert "data_key" not in store_reads[0] and "data_key" in store_reads[1]


@pytest.mark.django_db
def test_hero_audit_table(backend: Backend, make_user: Any) -> None:
    user = a_week_of_activity(make_user)
    out = io.StringIO()

    call_command("hero_audit", "ann", stdout=out)

    text = out.getvalue()
    assert f"History of ann (pk {user.pk})" in text
    assert "upgraded   points               1->2" in text
    assert "reason: duplicate account; by mod" in text
    assert "bookworm             3/5" in text
    assert (
        "  points: level 3 (Gold)" in text and "  night_owl: level 1 (Bronze)" in text
    )


@pytest.mark.django_db
def test_hero_audit_json_by_pk_as_of_and_for_one_achievement(
    backend: Backend, make_user: Any
) -> None:
    user = a_week_of_activity(make_user)
    out = io.StringIO()

    call_command(
        "hero_audit",
        str(user.pk),
        "--achievement",
        "points",
        "--as-of",
        "2026-03-02",
        "--format",
        "json",
        stdout=out,
    )

    data = json.loads(out.getvalue())
    assert data["user"] == {"pk": user.pk, "username": "ann"}
    assert data["levels"] == {"points": 2}
    assert data["as_of"].startswith("2026-03-02T23:59:59")
    assert [(h["kind"], h["level"]) for h in data["history"]] == [
        ("unlocked", 1),
        ("upgraded", 2),
    ]
    assert sorted(data["history"][0]) == [
        "achievement_id",
        "actor",
        "event",
        "forgotten",
        "key",
        "kind",
        "level",
        "occurred_at",
        "position",
        "previous_level",
        "reason",
        "recorded_at",
        "state",
        "steps",
        "total",
    ]
    assert data["history"][0]["occurred_at"] == "2026-03-01T12:00:00+00:00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "No user has the pk or username 'nobody'"),
        (["ann", "--achievement", "nope"], "No achievement has id 'nope'"),
        (["ann", "--as-of", "yesterday"], "is not a date or datetime"),
    ],
)
def test_hero_audit_errors(
    backend: Backend, make_user: Any, args: list[str], message: str
) -> None:
    make_user("ann")
    with pytest.raises(CommandError, match=message):
        call_command("hero_audit", *args, stdout=io.StringIO())
