"""The read tables: kept by events inline or by a worker, rebuilt and verified."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import threading
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from eventsourcing.application import Application
from freezegun import freeze_time

import hero
from hero.ledger import get_ledger
from hero.models import (
    Achievement,
    AchievementCount,
    AchievementCountChange,
    AchievementUnlocked,
    LedgerEntry,
    StoredEvent,
    TrackingPosition,
)
from hero.projections import worker
from hero.projections.base import (
    Change,
    ReadModelProjection,
    apply_read_models,
    read_changes,
)
from hero.projections.inline import read_models
from hero.projections.rebuild import rebuild
from hero.projections.verify import verify
from hero.store import store_status
from hero.store.positions import CURRENT, UPSTREAM
from tests.conftest import Backend, stored_domain_events

#: A statement that writes followers' positions.
TRACKING_WRITE = re.compile(r'(UPDATE|INSERT INTO|DELETE FROM) [`"]?hero_tracking')


def holdings(alias: str) -> list[tuple[Any, ...]]:
    return sorted(
        AchievementUnlocked.objects.using(alias).values_list(
            "user_id", "achievement_id", "level", "unlocked_at", "updated_at"
        )
    )


def counts(alias: str) -> dict[tuple[str, int], int]:
    return {
        key: n
        for key, n in AchievementCount.objects.using(alias).holders().items()
        if n
    }


def ledger(alias: str) -> list[tuple[Any, ...]]:
    return list(
        LedgerEntry.objects.using(alias).values_list(
            "position",
            "user_id",
            "achievement_id",
            "kind",
            "level",
            "previous_level",
            "trigger",
            "payload",
            "occurred_at",
            "recorded_at",
        )
    )


def snapshot(alias: str) -> tuple[Any, ...]:
    return holdings(alias), counts(alias), ledger(alias)


def activity(make_user: Any) -> list[Any]:
    """A few users unlocking and upgrading, on different days."""
    ann, bob, cid = make_user("ann"), make_user("bob"), make_user("cid")
    with freeze_time("2026-01-01 10:00"):
        hero.achievements.unlock("score_changed", user=ann, points=10)
        hero.achievements.unlock("score_changed", user=bob, points=100, night=True)
    with freeze_time("2026-01-02 10:00"):
        hero.achievements.unlock("score_changed", user=ann, points=1_000)
        hero.achievements.unlock("points_awarded", user=cid)
    with freeze_time("2026-01-03 10:00"):
        hero.achievements.unlock("score_changed", user=ann, points=10_000)
        hero.achievements.unlock("score_changed", user=cid, points=10)
    return [ann, bob, cid]


@pytest.mark.django_db
def test_inline_read_your_writes(backend: Backend, make_user: Any) -> None:
    ann, bob, _cid = activity(make_user)

    row = AchievementUnlocked.objects.using(backend.alias).get(
        user=ann, achievement="points"
    )
    assert row.level == 4
    assert row.unlocked_at == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert row.updated_at == dt.datetime(2026, 1, 3, 10, tzinfo=dt.UTC)
    assert {a.achievement_id: a.level for a in ann.achievements_unlocked.all()} == {
        "points": 4
    }
    assert {a.achievement_id for a in bob.achievements_unlocked.all()} == {
        "points",
        "night_owl",
    }
    assert counts(backend.alias) == {
        ("points", 4): 1,
        ("points", 2): 1,
        ("points", 1): 1,
        ("night_owl", 1): 1,
        ("comments_50", 1): 1,
    }
    kinds = [
        (e.kind, e.achievement_id, e.level)
        for e in LedgerEntry.objects.using(backend.alias).filter(user=ann)
    ]
    assert kinds == [
        ("unlocked", "points", 1),
        ("upgraded", "points", 3),
        ("upgraded", "points", 4),
    ]


@pytest.mark.django_db
def test_querysets_and_rarity(backend: Backend, make_user: Any) -> None:
    ann, bob, _cid = activity(make_user)
    make_user("dee")  # holds nothing

    with CaptureQueriesContext(connections[backend.alias]) as queries:
        titles = [
            u.achievement.title for u in AchievementUnlocked.objects.for_user(bob)
        ]
    assert sorted(titles) == ["Night owl", "Points"] and len(queries) == 1

    assert {u.user_id for u in AchievementUnlocked.objects.holders("points", 2)} == {
        ann.pk,
        bob.pk,
    }
    rarity = Achievement.objects.rarity("points", level=2)
    assert (rarity.holders, rarity.users, rarity.percent) == (2, 4, 50.0)
    assert Achievement.objects.rarity("points").percent == 75.0
    assert Achievement.objects.rarity("night_owl").holders == 1


@pytest.mark.django_db
def test_catalog_follows_the_code(backend: Backend, isolated_registry: Any) -> None:
    catalog = Achievement.objects.using(backend.alias)
    assert catalog.get(id="comments_50").title == "50 comments"  # synced on migrate
    assert catalog.get(id="night_owl").secret is True

    isolated_registry.remove("explodes")
    out = io.StringIO()
    call_command("hero_sync", stdout=out)

    assert catalog.get(id="explodes").retired is True
    assert "Retired (no longer defined): explodes" in out.getvalue()
    assert not catalog.get(id="points").retired


@pytest.mark.django_db
def test_a_view_applies_an_event_once_and_tracks_events_it_ignores(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    settings.HERO_RECORD_TRIGGERS = True
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    hero.achievements.unlock("nobody_listens", user=user)  # a Triggered event only
    before = snapshot(backend.alias)
    last = stored_domain_events()[-1]

    holdings_view, ledger_view = read_models(backend.alias)
    positions = [n.id for n in holdings_view_notifications()]
    # The holdings view ignores Triggered events, yet its position is the last event's.
    assert holdings_view.max_tracking_id(UPSTREAM) == positions[-1]
    # Applying everything again changes nothing.
    changes = [
        Change(p, e) for p, e in zip(positions, stored_domain_events(), strict=True)
    ]
    assert holdings_view.apply(changes) == 0
    assert ledger_view.apply(changes) == 0
    assert snapshot(backend.alias) == before
    assert last.trigger == "nobody_listens"


def holdings_view_notifications() -> list[Any]:
    from hero.ledger import get_ledger

    return list(get_ledger().recorder.select_notifications(start=None, limit=1000))


@pytest.mark.django_db
def test_rebuild_gives_the_inline_result(backend: Backend, make_user: Any) -> None:
    activity(make_user)
    inline = snapshot(backend.alias)

    out = io.StringIO()
    call_command("hero_rebuild", "--batch-size", "2", stdout=out)

    assert snapshot(backend.alias) == inline
    assert "Rebuilt holdings, ledger: 7 events" in out.getvalue()
    assert "Rebuilding: 0 of 7 events already done." in out.getvalue()


@pytest.mark.django_db
def test_a_rebuild_killed_half_way_resumes_to_the_clean_result(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    activity(make_user)
    clean = snapshot(backend.alias)

    # Kill the rebuild after its third batch has been committed.
    from hero.projections import rebuild as rebuild_module

    original = rebuild_module.apply_rows
    batches: list[int] = []

    def dies(*args: Any, **kwargs: Any) -> None:
        if len(batches) == 3:
            raise KeyboardInterrupt
        batches.append(1)
        original(*args, **kwargs)

    monkeypatch.setattr(rebuild_module, "apply_rows", dies)
    with pytest.raises(KeyboardInterrupt):
        rebuild(backend.alias, batch_size=2)
    monkeypatch.undo()

    # Half-built: the views are marked, and a write meanwhile leaves them alone.
    assert all(v.is_rebuilding() for v in read_models(backend.alias))
    assert len(ledger(backend.alias)) == 6
    assert AchievementUnlocked.objects.using(backend.alias).count() < len(clean[0])

    result = rebuild(backend.alias, batch_size=2)

    assert result.resumed == ["holdings", "ledger"]
    assert snapshot(backend.alias) == clean
    assert not any(v.is_rebuilding() for v in read_models(backend.alias))


@pytest.mark.django_db(transaction=True)
def test_a_rebuild_starting_during_an_inline_write_waits_for_it(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: views current with the store, then an inline write left open.
    ann, bob = make_user("ann"), make_user("bob")
    hero.achievements.unlock("score_changed", user=ann, points=10)
    outcome: dict[str, Any] = {}

    def rebuild_now() -> None:
        try:
            outcome["output"] = io.StringIO()
            call_command("hero_rebuild", stdout=outcome["output"])
        except Exception as error:  # reported by the assertions below
            outcome["error"] = error
        finally:
            connections.close_all()

    # Act: a rebuild starts while the write is still open; the write commits.
    with transaction.atomic(using=backend.alias):
        hero.achievements.unlock("score_changed", user=bob, points=100)
        rebuilder = threading.Thread(target=rebuild_now)
        rebuilder.start()
        # Time for the rebuild to get as far as it can before the commit.
        rebuilder.join(timeout=0.5)
    rebuilder.join(timeout=60)

    # Assert: the rebuild counted bob's award once, as the store says.
    assert "error" not in outcome, outcome
    assert "Rebuilt holdings, ledger" in outcome["output"].getvalue()
    assert counts(backend.alias) == {("points", 1): 1, ("points", 2): 1}
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_rebuild_picks_up_events_written_while_it_was_stopped(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = activity(make_user)
    from hero.projections import rebuild as rebuild_module

    def dies(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rebuild_module, "apply_rows", dies)
    with pytest.raises(KeyboardInterrupt):
        rebuild(backend.alias, batch_size=2)
    monkeypatch.undo()

    # While marked as rebuilding, an unlock writes its events but not the tables.
    hero.achievements.unlock("score_changed", user=users[1], points=1_000)
    assert (
        not AchievementUnlocked.objects.using(backend.alias)
        .filter(user=users[1])
        .exists()
    )

    rebuild(backend.alias, batch_size=2)
    assert (
        AchievementUnlocked.objects.using(backend.alias)
        .get(user=users[1], achievement="points")
        .level
        == 3
    )
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_verify_passes_on_a_healthy_store(backend: Backend, make_user: Any) -> None:
    activity(make_user)
    out = io.StringIO()
    call_command("hero_verify", stdout=out)
    assert (
        "The read tables match the event store (7 events chained, 5 holdings, 7 ledger)."
        in out.getvalue()
    )


@pytest.mark.django_db
def test_verify_reports_every_difference_and_fails(
    backend: Backend, make_user: Any
) -> None:
    ann, bob, cid = activity(make_user)
    rows = AchievementUnlocked.objects.using(backend.alias)
    rows.filter(user=bob, achievement="night_owl").delete()  # missing
    rows.filter(user=ann, achievement="points").update(level=2)  # wrong level
    rows.create(  # extra
        user=cid,
        achievement_id="night_owl",
        level=1,
        unlocked_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        updated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    first_of_bob = LedgerEntry.objects.using(backend.alias).filter(user=bob).first()
    assert first_of_bob is not None
    deleted_position = first_of_bob.position
    first_of_bob.delete()

    out = io.StringIO()
    with pytest.raises(CommandError, match="difference\\(s\\) between the store"):
        call_command("hero_verify", stdout=out)

    report = out.getvalue()
    assert (
        f"holdings: missing row: user {bob.pk} holds 'night_owl' at level 1" in report
    )
    assert f"holdings: extra row: user {cid.pk}, 'night_owl' at level 1" in report
    assert (
        f"holdings: wrong level: user {ann.pk}, 'points' is at level 2, the store says 4"
        in report
    )
    assert f"ledger: missing entry at position {deleted_position} (unlocked)" in report


@pytest.mark.django_db(transaction=True)
def test_async_mode_appends_events_and_the_worker_catches_up(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    settings.HERO_PROJECTIONS = "async"
    activity(make_user)
    assert AchievementUnlocked.objects.using(backend.alias).count() == 0
    assert LedgerEntry.objects.using(backend.alias).count() == 0

    out = io.StringIO()
    call_command("hero_project", "--once", "--timeout", "30", stdout=out)

    assert AchievementUnlocked.objects.using(backend.alias).count() == 5
    assert LedgerEntry.objects.using(backend.alias).count() == 7
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_a_worker_behind_applies_the_events_it_has_read_together(
    backend: Backend, make_user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: seven events the worker has not applied, and batches of three
    # at most; each batch the worker applies is noted.
    settings.HERO_PROJECTIONS = "async"
    activity(make_user)
    monkeypatch.setattr(worker, "BATCH_SIZE", 3)
    batches: list[tuple[list[str], list[int]]] = []
    apply = ReadModelProjection.process_events

    def noting(projection: ReadModelProjection, events: Any) -> None:
        names = [model.name for model in projection.view.models]
        batches.append((names, [t.notification_id for _, t in events]))
        apply(projection, events)

    monkeypatch.setattr(ReadModelProjection, "process_events", noting)

    # Act
    call_command("hero_project", "--once", "--timeout", "30", stdout=io.StringIO())

    # Assert: both read models took the backlog together, in runs of three in
    # store order, each run in one transaction; the tables match the store.
    positions = list(
        StoredEvent.objects.using(backend.alias)
        .order_by("id")
        .values_list("id", flat=True)
    )
    assert batches == [
        (["holdings", "ledger"], positions[0:3]),
        (["holdings", "ledger"], positions[3:6]),
        (["holdings", "ledger"], positions[6:7]),
    ]
    assert LedgerEntry.objects.using(backend.alias).count() == 7
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_hero_project_once_inside_a_transaction_says_why_it_cannot_catch_up(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    # The test's transaction is open: the projections' own connections cannot
    # see the event written in it.
    settings.HERO_PROJECTIONS = "async"
    hero.achievements.unlock("score_changed", user=make_user(), points=10)

    with pytest.raises(CommandError) as raised:
        call_command(
            "hero_project", "holdings", "--once", "--timeout", "1", stdout=io.StringIO()
        )

    assert "Not caught up with position" in str(raised.value)
    assert "called inside a transaction" in str(raised.value)
    assert "Commit first." in str(raised.value)
    assert AchievementUnlocked.objects.using(backend.alias).count() == 0


@pytest.mark.django_db(transaction=True)
def test_hero_project_once_runs_the_projections_named_each_from_its_position(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    settings.HERO_PROJECTIONS = "async"
    activity(make_user)

    def held() -> list[tuple[Any, ...]]:
        rows = AchievementUnlocked.objects.using(backend.alias).values_list(
            "user_id", "achievement_id", "level", "updated_at"
        )
        return sorted(rows)

    # One projection: the holdings apply every event, the ledger none.
    call_command("hero_project", "holdings", "--once", stdout=io.StringIO())
    holdings = held()
    assert len(holdings) == 5
    assert LedgerEntry.objects.using(backend.alias).count() == 0

    # Both: one worker starts where the one behind (the ledger) is.
    call_command("hero_project", "--once", stdout=io.StringIO())

    assert LedgerEntry.objects.using(backend.alias).count() == 7
    assert held() == holdings  # the holdings as they were
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_switching_from_async_to_inline_fills_the_gap(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    settings.HERO_PROJECTIONS = "async"
    _ann, bob, _cid = activity(make_user)
    settings.HERO_PROJECTIONS = "inline"

    hero.achievements.unlock("score_changed", user=bob, points=1_000)

    # The inline write first applied the seven events it had missed.
    assert AchievementUnlocked.objects.using(backend.alias).count() == 5
    assert LedgerEntry.objects.using(backend.alias).count() == 8
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_inline_writes_keep_positions_current_without_writing_them(
    backend: Backend, make_user: Any
) -> None:
    ann, bob = make_user("ann"), make_user("bob")
    hero.achievements.unlock("score_changed", user=ann, points=10)
    stored = TrackingPosition.objects.using(backend.alias)
    assert dict(stored.values_list("application_name", "notification_id")) == {
        "holdings@hero": CURRENT,
        "ledger@hero": CURRENT,
    }

    with CaptureQueriesContext(connections[backend.alias]) as queries:
        hero.achievements.unlock("score_changed", user=bob, points=100)

    # One read of the positions (on SQLite, in the insert of the event), no write.
    touching = [q["sql"] for q in queries if "hero_tracking" in q["sql"]]
    writes = [
        q
        for q in touching
        if re.match(r'(INSERT INTO|UPDATE|DELETE FROM) "?hero_tracking', q)
    ]
    assert len(touching) == 1 and not writes, touching
    last = get_ledger().recorder.max_notification_id()
    assert [v.max_tracking_id(UPSTREAM) for v in read_models(backend.alias)] == [
        last,
        last,
    ]
    assert store_status().tracking == {"holdings@hero": last, "ledger@hero": last}
    out = io.StringIO()
    call_command("hero_status", stdout=out)
    assert f"follower holdings@hero: at {last} (0 behind)" in out.getvalue()


@pytest.mark.django_db
def test_an_async_write_marks_current_views_behind_until_they_catch_up(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    # Arrange: views current after an inline write.
    ann, bob = make_user("ann"), make_user("bob")
    hero.achievements.unlock("score_changed", user=ann, points=10)
    before = get_ledger().recorder.max_notification_id()

    # Act: an event written without the views.
    settings.HERO_PROJECTIONS = "async"
    hero.achievements.unlock("score_changed", user=bob, points=100)
    settings.HERO_PROJECTIONS = "inline"

    # Assert: the views say where they really are, and are behind, not wrong.
    stored = TrackingPosition.objects.using(backend.alias)
    assert set(stored.values_list("notification_id", flat=True)) == {before}
    assert [v.max_tracking_id(UPSTREAM) for v in read_models(backend.alias)] == [
        before,
        before,
    ]
    assert verify(backend.alias).behind == {"holdings": 1, "ledger": 1}
    assert verify(backend.alias).differences == []

    # Another write without the views leaves their positions alone: they are
    # behind already. Where the writer read them ahead under the ordering lock
    # (SQLite, PostgreSQL), it sends no statement for them.
    settings.HERO_PROJECTIONS = "async"
    with CaptureQueriesContext(connections[backend.alias]) as queries:
        hero.achievements.unlock("score_changed", user=bob, points=1_000)
    settings.HERO_PROJECTIONS = "inline"
    writes = [q["sql"] for q in queries if TRACKING_WRITE.match(q["sql"])]
    assert len(writes) == (1 if backend.name == "mysql" else 0), writes
    assert set(stored.values_list("notification_id", flat=True)) == {before}
    assert verify(backend.alias).behind == {"holdings": 2, "ledger": 2}

    # A worker applying the events moves the positions to them, as numbers ...
    last = before + 2
    changes = read_changes(before, 10)
    assert apply_read_models(read_models(backend.alias), changes) == 2
    assert set(stored.values_list("notification_id", flat=True)) == {last}

    # ... and the next inline write makes them current again, with one write
    # of the positions.
    with CaptureQueriesContext(connections[backend.alias]) as queries:
        hero.achievements.unlock("score_changed", user=ann, points=1_000)
    assert set(stored.values_list("notification_id", flat=True)) == {CURRENT}
    writes = [q["sql"] for q in queries if TRACKING_WRITE.match(q["sql"])]
    assert len(writes) == 1, writes
    assert "SET notification_id = -1" in writes[0]
    assert not verify(backend.alias).behind
    assert counts(backend.alias) == {("points", 3): 2}


@pytest.mark.django_db
def test_a_worker_given_events_a_current_view_has_applied_changes_nothing(
    backend: Backend, make_user: Any
) -> None:
    activity(make_user)
    before = snapshot(backend.alias)
    changes = read_changes(0, 100)

    assert apply_read_models(read_models(backend.alias), changes) == 0
    assert apply_read_models(read_models(backend.alias), changes[-1:]) == 0

    assert snapshot(backend.alias) == before
    stored = TrackingPosition.objects.using(backend.alias)
    assert set(stored.values_list("notification_id", flat=True)) == {CURRENT}


@pytest.mark.django_db
def test_events_of_another_application_leave_current_views_right(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: views current; a site's own application shares the store.
    from tests.test_persistence import Counter

    hero.achievements.unlock("score_changed", user=make_user("ann"), points=10)
    app = Application[object](env={"PERSISTENCE_MODULE": "hero.persistence"})

    # Act: its events, then hero's.
    counter = Counter()
    counter.increment()
    app.save(counter)
    hero.achievements.unlock("score_changed", user=make_user("bob"), points=100)

    # Assert: current, and right: a verification and a rebuild agree.
    stored = TrackingPosition.objects.using(backend.alias)
    assert set(stored.values_list("notification_id", flat=True)) == {CURRENT}
    assert not verify(backend.alias).behind
    before = snapshot(backend.alias)
    call_command("hero_rebuild", stdout=io.StringIO())
    assert snapshot(backend.alias) == before
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_an_inline_write_catches_up_a_view_behind_the_others(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    # Arrange: events written in async mode; the holdings were brought up to
    # date (as a worker of the holdings alone would), the ledger was not.
    settings.HERO_PROJECTIONS = "async"
    _ann, bob, _cid = activity(make_user)
    apply_read_models(read_models(backend.alias, ["holdings"]), read_changes(0, 100))
    assert LedgerEntry.objects.using(backend.alias).count() == 0
    settings.HERO_PROJECTIONS = "inline"

    # Act: an inline write, whose views are not all one position behind it.
    hero.achievements.unlock("score_changed", user=bob, points=1_000)

    # Assert: the holdings took the new event once, the ledger all eight, and
    # both views' positions are the store's last.
    held = AchievementUnlocked.objects.using(backend.alias)
    assert held.get(user=bob, achievement_id="points").level == 3
    assert counts(backend.alias)[("points", 3)] == 1  # bob; ann went on to 4
    assert LedgerEntry.objects.using(backend.alias).count() == 8
    positions = TrackingPosition.objects.using(backend.alias).values_list(
        "application_name", "notification_id"
    )
    assert sorted(positions) == [("holdings@hero", CURRENT), ("ledger@hero", CURRENT)]
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_holdings_of_deleted_users_are_left_out_of_a_rebuild(
    backend: Backend, make_user: Any
) -> None:
    _ann, bob, _cid = activity(make_user)
    bob_pk = bob.pk
    bob.delete()

    call_command("hero_rebuild", stdout=io.StringIO())

    assert (
        not AchievementUnlocked.objects.using(backend.alias)
        .filter(user_id=bob_pk)
        .exists()
    )
    # Bob's two awards, and the two Forgotten events of his deletion.
    entries = LedgerEntry.objects.using(backend.alias).filter(user_id=bob_pk)
    assert sorted(entries.values_list("kind", flat=True)) == [
        "forgotten",
        "forgotten",
        "unlocked",
        "unlocked",
    ]
    call_command("hero_verify", stdout=io.StringIO())


def test_unknown_projection_names_are_refused() -> None:
    with pytest.raises(CommandError, match="choose from holdings, ledger"):
        call_command("hero_rebuild", "badges")


@pytest.mark.django_db(transaction=True)
def test_a_failing_view_write_rolls_back_the_whole_call(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsourcing.persistence import PersistenceError

    from hero.projections.ledger import LedgerEntries

    # Arrange: the ledger view's statement fails in the database (after the
    # holdings view wrote its rows: on PostgreSQL, in the same pipeline).
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    before = snapshot(backend.alias)

    def broken_write(self: Any, cursor: Any, changes: Any, users: Any) -> None:
        cursor.executemany(
            "INSERT INTO hero_ledger_entry (position) VALUES (%s)",
            [(c.position,) for c in changes],
        )

    monkeypatch.setattr(LedgerEntries, "write", broken_write)

    # Act: an upgrade.
    with pytest.raises(PersistenceError, match=f"Database '{backend.alias}'"):
        hero.achievements.unlock("score_changed", user=user, points=100)

    # Assert: nothing of the call is left, events included, and the next call works.
    assert snapshot(backend.alias) == before
    assert len(stored_domain_events()) == 1
    monkeypatch.undo()
    (outcome,) = hero.achievements.unlock("score_changed", user=user, points=100)
    assert (outcome.level, outcome.previous_level) == (2, 1)
    call_command("hero_verify", stdout=io.StringIO())


class _DeadlockDetected(Exception):
    sqlstate = "40P01"


def test_a_worker_applies_an_event_again_after_losing_a_deadlock() -> None:
    from eventsourcing.persistence import OperationalError, Tracking

    from hero.projections.base import ReadModelProjection
    from hero.store.transactions import VersionConflict

    # Arrange: a read model whose first two applies are rolled back to break a deadlock,
    # and one whose apply fails for another reason.
    calls: list[int] = []

    class Flaky:
        def apply(self, changes: Any, application_name: str) -> int:
            calls.append(len(changes))
            if len(calls) < 3:
                # As the driver's error, then as hero's own transaction says it.
                error: Exception = (
                    OperationalError if len(calls) == 1 else VersionConflict
                )("deadlock detected")
                error.__cause__ = _DeadlockDetected()
                raise error
            return 1

    class Broken:
        def apply(self, changes: Any, application_name: str) -> int:
            calls.append(0)
            raise OperationalError("the server went away")

    tracking = Tracking("hero", 7)

    # Act / assert: the deadlocks are retried; the other error is not.
    flaky = ReadModelProjection(Flaky())  # type: ignore[arg-type]
    flaky.process_event(object(), tracking)
    assert calls == [1, 1, 1]
    broken = ReadModelProjection(Broken())  # type: ignore[arg-type]
    with pytest.raises(OperationalError, match="went away"):
        broken.process_event(object(), tracking)
    assert calls == [1, 1, 1, 0]


def full_ledger(alias: str) -> list[dict[str, Any]]:
    """Every column of every ledger entry, in order of position."""
    return list(LedgerEntry.objects.using(alias).order_by("position").values())


@pytest.mark.django_db
def test_the_ledger_copied_in_sql_is_the_ledger_written_from_events(
    backend: Backend, make_user: Any, isolated_registry: Any, settings: Any
) -> None:
    # Arrange: every kind of event, the trigger log on, and one unlock stored
    # as its first class version (no awarded_at, no key), which the mapper
    # upcasts and the copy in SQL leaves to it.
    from hero.projections.ledger import LedgerEntries

    @hero.achievements.register
    class NiceAnswer(hero.AchievementBase):
        id = "nice_answer"
        title = "Nice answer"
        events = ["answer_scored"]
        repeatable = True

        def unlock(self, **state: Any) -> Any:
            return hero.AchievementUnlocked(level=1, key=f"answer:{state['answer']}")

    settings.HERO_RECORD_TRIGGERS = True
    ann = activity(make_user)[0]
    dan = make_user("dan")
    with freeze_time("2026-01-04 10:00"):
        hero.achievements.unlock("chapter_read", user=dan, chapters=2, note="ü ✓")
        hero.achievements.revoke(ann, "points", reason="tests", actor="admin")
        hero.achievements.grant(dan, "night_owl", reason="by hand", actor="admin")
        hero.achievements.unlock("answer_scored", user=dan, answer=1)
        hero.achievements.unlock("answer_scored", user=dan, answer=2)
        hero.achievements.revoke(dan, "nice_answer", key="answer:1", reason="spam")
    first = StoredEvent.objects.using(backend.alias).order_by("id").first()
    assert first is not None and first.topic == "hero:UserAchievement.Unlocked"
    state = json.loads(bytes(first.state))
    del state["awarded_at"], state["key"], state["class_version"]
    StoredEvent.objects.using(backend.alias).filter(id=first.id).update(
        state=json.dumps(state).encode()
    )
    in_sql: list[int] = []
    copy = LedgerEntries.copy

    def noting(self: LedgerEntries, *args: Any) -> set[int]:
        in_sql.extend(positions := copy(self, *args))
        return positions

    with mock.patch.object(LedgerEntries, "copy", noting):
        call_command("hero_rebuild", "ledger", stdout=io.StringIO())
    copied = full_ledger(backend.alias)
    # MariaDB and MySQL have no copy in SQL; elsewhere all but the old event.
    assert sorted(in_sql) == (
        [] if backend.name == "mysql" else [e["position"] for e in copied[1:]]
    )

    # Act: the same rebuild with every event written from its decoded event.
    with mock.patch.object(LedgerEntries, "copy", return_value=set()):
        call_command("hero_rebuild", "ledger", stdout=io.StringIO())

    # Assert: the same rows, the upcast one among them, every kind there.
    assert copied == full_ledger(backend.alias)
    assert copied[0]["occurred_at"] == copied[0]["recorded_at"]
    kinds = {entry["kind"] for entry in copied}
    assert kinds == {
        "unlocked", "upgraded", "progressed", "revoked", "granted", "repeated",
        "triggered",
    }  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_writers_of_one_count_do_not_wait_for_each_others_transactions(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL settles counts at COMMIT")
    # Arrange: two users hold the same achievement; their events, to apply again.
    ann, bob = make_user(), make_user()
    for user in (ann, bob):
        hero.achievements.unlock("score_changed", user=user, points=10)
    changes = read_changes(0, 100)
    achievement = changes[0].event.achievement_id
    holdings = read_models(backend.alias, ["holdings"])[0]
    counts = AchievementCount.objects.using(backend.alias)
    assert counts.holders([achievement]) == {(achievement, 1): 2}
    written, release = threading.Event(), threading.Event()

    def hold_a_transaction_open() -> None:
        try:
            with transaction.atomic(using=backend.alias):
                with connections[backend.alias].cursor() as cursor:
                    holdings.write(cursor, changes[:1], users=None)
                # The transaction sees its own change before it commits.
                assert counts.holders([achievement]) == {(achievement, 1): 3}
                written.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_a_transaction_open)
    holder.start()
    try:
        assert written.wait(10)
        # Act: another transaction changes the same count while the first is open.
        with transaction.atomic(using=backend.alias):
            with connections[backend.alias].cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
                holdings.write(cursor, changes[1:2], users=None)
    finally:
        release.set()
        holder.join()

    # Assert: both changes were settled at their commits, none is left pending.
    assert counts.holders([achievement]) == {(achievement, 1): 4}
    assert counts.get(achievement_id=achievement, level=1).holders == 4
    assert not AchievementCountChange.objects.using(backend.alias).exists()


@pytest.mark.django_db(transaction=True)
def test_a_count_waits_for_the_callers_commit_only_in_the_callers_transaction(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL settles counts at COMMIT")
    # Arrange: the read models are current (their positions exist).
    hero.achievements.unlock("score_changed", user=make_user(), points=10)
    connection = connections[backend.alias]
    ann = make_user()

    def after_the_writes(captured: CaptureQueriesContext) -> list[str]:
        """The statements from the first that names a count to the first
        COMMIT, shortened."""
        # Without the "N times: " of an executemany in Django's log.
        statements = [
            re.sub(r"^\d+ times: ", "", q["sql"]) for q in captured.captured_queries
        ]
        first = next(n for n, sql in enumerate(statements) if "_count" in sql)
        commit = statements.index("COMMIT", first)
        return [
            " ".join(sql.split()[:3]).replace(" (achievement_id,", "")
            for sql in statements[first : commit + 1]
        ]

    # Act: a first award and an upgrade in transactions of hero's own, and a
    # first award in the caller's.
    with CaptureQueriesContext(connection) as first:
        hero.achievements.unlock("score_changed", user=ann, points=10)
    with CaptureQueriesContext(connection) as upgrade:
        hero.achievements.unlock("score_changed", user=ann, points=100)
    with CaptureQueriesContext(connection) as callers:
        with transaction.atomic(using=backend.alias):
            hero.achievements.unlock("score_changed", user=make_user(), points=10)

    # Assert: hero's own transaction adds to the counts in its last
    # statements, sent with its COMMIT (the ledger's entry is written before);
    # the caller's leaves its change to the trigger at its COMMIT.
    add = "INSERT INTO hero_achievement_count"
    assert after_the_writes(first) == [add, "COMMIT"]
    assert after_the_writes(upgrade) == [add, "COMMIT"]  # both levels' counts
    assert after_the_writes(callers) == [
        "WITH made AS",
        "INSERT INTO hero_ledger_entry",
        "RELEASE SAVEPOINT hero_write",
        "COMMIT",
    ]
    counts = AchievementCount.objects.using(backend.alias)
    assert counts.holders(["points"]) == {("points", 1): 2, ("points", 2): 1}
    assert not AchievementCountChange.objects.using(backend.alias).exists()


@pytest.mark.django_db
def test_followers_rows_are_there_to_lock_before_any_read_row_is_written(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: an event, and followers that never applied anything (no rows).
    hero.achievements.unlock("score_changed", user=make_user(), points=10)
    TrackingPosition.objects.using(backend.alias).all().delete()
    models = read_models(backend.alias)

    def rows() -> dict[str, int]:
        return dict(
            TrackingPosition.objects.using(backend.alias).values_list(
                "application_name", "notification_id"
            )
        )

    # Act: lock their positions, as a writer catching them up does first.
    with transaction.atomic(using=backend.alias):
        with connections[backend.alias].cursor() as cursor:
            states = models[0].positions.states(cursor, [m.name for m in models])

    # Assert: where rows are locked, they are made (at 0, "nothing applied",
    # as a missing row reads); SQLite, one writer at a time, locks none.
    assert {name: position or 0 for name, (position, _) in states.items()} == {
        "holdings": 0,
        "ledger": 0,
    }
    made = {} if backend.name == "sqlite" else {"holdings@hero": 0, "ledger@hero": 0}
    assert rows() == made

    # Act: a rebuild that stops right after it started.
    from hero.projections import rebuild as rebuild_module

    def dies(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rebuild_module, "apply_rows", dies)
    with pytest.raises(KeyboardInterrupt):
        rebuild(backend.alias, ["holdings"])

    # Assert: its follower's row stays, back at 0, beside the marker.
    assert rows() == {**made, "holdings@hero": 0, "holdings@hero#rebuild": 0}


@pytest.mark.django_db
def test_a_failed_verification_in_the_trust_tests_shows_the_store_around_a_missing_entry(
    backend: Backend, make_user: Any
) -> None:
    from tests.trust_helpers import verify_passes

    # Arrange: an entry of the ledger lost.
    activity(make_user)
    entries = LedgerEntry.objects.using(backend.alias)
    position = entries.order_by("position")[2].position
    entries.filter(position=position).delete()

    # Act
    with pytest.raises(AssertionError) as failed:
        verify_passes()

    # Assert: the report names it, with the events and entries beside it and
    # the followers' positions.
    message = str(failed.value)
    assert f"missing entry at position {position} (" in message
    assert f"around position {position}:" in message
    assert f"  event ({position}, " in message
    assert f"  entry ({position}, " not in message
    assert f"  entry ({position + 1}, " in message
    assert "positions: [('holdings@hero', -1), ('ledger@hero', -1)]" in message


@pytest.mark.django_db
def test_the_trust_tests_store_log_says_who_reserved_a_missing_entry_and_who_passed_it(
    backend: Backend, make_user: Any, settings: Any, tmp_path: Any
) -> None:
    from tests.store_log import recording
    from tests.trust_helpers import verify_passes

    # Arrange: events the ledger applied inline, then two left to a follower,
    # which applies them; the first one's entry is lost afterwards.
    with recording(tmp_path / "store.log"):
        activity(make_user)
        settings.HERO_PROJECTIONS = "async"
        dan = make_user("dan")
        hero.achievements.unlock("score_changed", user=dan, points=100)
        hero.achievements.unlock("points_awarded", user=dan)
        ledger = read_models(backend.alias, ["ledger"])
        changes = read_changes(ledger[0].max_tracking_id(UPSTREAM) or 0, 10)
        first, second = (change.position for change in changes)
        apply_read_models(ledger, changes)
        LedgerEntry.objects.using(backend.alias).filter(position=first).delete()

        # Act
        with pytest.raises(AssertionError) as failed:
            verify_passes()

    # Assert: the message says who reserved it, in which mode, who marked the
    # ledger behind it, who applied it and who moved the ledger past it.
    message = str(failed.value)
    assert f"missing entry at position {first} (" in message
    assert re.search(rf"pid \d+: reserved \[{first}\] \(async projections\)", message)
    assert f"marked ['holdings', 'ledger'] behind at {first - 1}" in message
    assert f"applied to ledger with {first}-{second}" in message
    assert f"first set ledger@hero past it, to {second}" in message


def test_the_store_log_finds_a_read_that_passed_a_position_by(tmp_path: Any) -> None:
    from tests.store_log import explain

    # Arrange: a writer reserved 7 and 8; a follower read 6 and 8 before 7
    # was committed, then set its position to 8.
    log = tmp_path / "store.log"
    records = [
        {"kind": "reserved", "t": 1.0, "pid": 10, "ids": [7, 8], "mode": "async"},
        {"kind": "read", "t": 2.0, "pid": 20, "after": 5, "stop": None,
         "limit": 500, "topics": False, "ids": [6, 8]},
        {"kind": "read", "t": 2.5, "pid": 20, "after": 8, "stop": None,
         "limit": 500, "topics": False, "ids": [9]},
        {"kind": "positions", "t": 3.0, "pid": 20, "pairs": [["ledger@hero", 8]]},
        {"kind": "positions", "t": 4.0, "pid": 20, "pairs": [["ledger@hero", 9]]},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(r) + "\n" for r in records))

    # Act
    lines = explain(log, 7)

    # Assert: the reservation, the read that passed 7, the first position past it.
    assert lines == [
        "1.000000 pid 10: reserved [7, 8] (async projections)",
        "2.000000 pid 20: a read after 5 (stop None, limit 500) returned 6,8, not 7",
        "3.000000 pid 20: first set ledger@hero past it, to 8",
    ]


def test_the_store_log_lists_the_events_a_read_passed_by(tmp_path: Any) -> None:
    from tests.store_log import passed_by

    # Arrange: reads of the log, one of which passed 7 by; 9 was never
    # committed, and a read of topics skips other events by design.
    log = tmp_path / "store.log"
    records = [
        {"kind": "read", "t": 2.0, "pid": 20, "after": 5, "stop": None,
         "limit": 500, "topics": False, "ids": [6, 8, 10]},
        {"kind": "read", "t": 2.5, "pid": 20, "after": 0, "stop": 4,
         "limit": 4, "topics": False, "ids": [1, 2, 3, 4]},
        {"kind": "read", "t": 2.6, "pid": 21, "after": 0, "stop": None,
         "limit": 500, "topics": True, "ids": [2, 6]},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(r) + "\n" for r in records))

    # Act
    passed = passed_by(log, store={1, 2, 3, 4, 6, 7, 8, 10})

    # Assert
    assert list(passed) == [7]
    assert passed[7] == [
        "2.000000 pid 20: a read after 5 (stop None, limit 500) returned 6,8,10, not 7"
    ]
