"""hero.store beyond eventsourcing's conformance cases: transactions it
joins, the errors it raises, how it writes, and how it is selected."""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import uuid4

import pytest
from django.db import connection, connections, transaction
from django.db import utils as db_utils
from django.test.utils import CaptureQueriesContext
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    InfrastructureFactoryError,
    IntegrityError,
    OperationalError,
    StoredEvent,
)

import hero
from hero.exceptions import InvalidUser
from hero.models import StoredEvent as StoredEventModel
from hero.models import TrackingPosition
from hero.store import sqlite as store_sqlite
from hero.store.factory import DjangoFactory
from hero.store.recorders import (
    INSERT_CHUNK_SIZE,
    DjangoApplicationRecorder,
    DjangoProcessRecorder,
    PollingSubscription,
)
from hero.store.transactions import DjangoDatastore
from tests.conftest import Backend


def stored_events(count: int, originator_id: object = None) -> list[StoredEvent]:
    originator_id = originator_id or uuid4()
    return [
        StoredEvent(
            originator_id=originator_id,  # type: ignore[arg-type]
            originator_version=version,
            topic="tests:Happened",
            state=b"{}",
        )
        for version in range(1, count + 1)
    ]


@pytest.fixture
def recorder(backend: Backend) -> DjangoProcessRecorder:
    return DjangoProcessRecorder(DjangoDatastore(backend.alias))


def count_events(backend: Backend) -> int:
    return StoredEventModel.objects.using(backend.alias).count()


class Rollback(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_events_roll_back_with_the_callers_transaction(
    backend: Backend, recorder: DjangoProcessRecorder
) -> None:
    # A caller's transaction records events, then fails.
    with pytest.raises(Rollback), transaction.atomic(using=backend.alias):
        recorder.insert_events(stored_events(3))
        assert count_events(backend) == 3  # visible inside the transaction
        raise Rollback

    # Nothing of it was committed.
    assert count_events(backend) == 0
    assert recorder.max_notification_id() is None


@pytest.mark.django_db(transaction=True)
def test_events_commit_with_the_callers_transaction(
    backend: Backend, recorder: DjangoProcessRecorder
) -> None:
    with transaction.atomic(using=backend.alias):
        ids = recorder.insert_events(stored_events(2))

    assert ids is not None and ids[1] == ids[0] + 1
    notifications = recorder.select_notifications(start=None, limit=10)
    assert [n.id for n in notifications] == ids


@pytest.mark.django_db
def test_duplicate_version_writes_nothing_and_leaves_callers_transaction_usable(
    backend: Backend, recorder: DjangoProcessRecorder
) -> None:
    originator_id = uuid4()
    recorder.insert_events(stored_events(1, originator_id))

    with transaction.atomic(using=backend.alias):
        # A batch of a new event and a duplicate fails as a whole...
        with pytest.raises(IntegrityError):
            recorder.insert_events(stored_events(2, originator_id))
        # ...and the caller's transaction can go on.
        assert count_events(backend) == 1
        recorder.insert_events(stored_events(1))

    assert count_events(backend) == 2


@pytest.mark.django_db
def test_many_events_are_written_in_one_statement(
    backend: Backend, recorder: DjangoProcessRecorder
) -> None:
    with CaptureQueriesContext(connections[backend.alias]) as queries:
        ids = recorder.insert_events(stored_events(300))

    inserts = [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith("INSERT")
        and "hero_stored_event" in q["sql"]
    ]
    assert len(inserts) == 1
    assert ids == sorted(ids) and len(set(ids)) == 300


@pytest.mark.django_db
def test_large_batches_are_chunked_and_keep_their_order(
    backend: Backend, recorder: DjangoProcessRecorder
) -> None:
    events = stored_events(INSERT_CHUNK_SIZE * 2 + 7)
    ids = recorder.insert_events(events)

    assert ids is not None and len(ids) == len(events)
    notifications = recorder.select_notifications(start=ids[0], limit=len(events))
    assert [n.originator_version for n in notifications] == [
        e.originator_version for e in events
    ]


@pytest.mark.django_db
def test_tracking_is_recorded_atomically_with_events(
    backend: Backend, recorder: DjangoProcessRecorder
) -> None:
    from eventsourcing.persistence import Tracking

    recorder.insert_events(stored_events(1), tracking=Tracking("projection", 5))
    # Tracking that does not move forward fails, and takes its events with it.
    with pytest.raises(IntegrityError, match="already at or past notification 5"):
        recorder.insert_events(stored_events(2), tracking=Tracking("projection", 5))

    assert count_events(backend) == 1
    assert recorder.max_tracking_id("projection") == 5


def test_a_database_that_is_down_raises_operational_error_without_hanging(
    down_alias: str, django_db_blocker: pytest.FixtureDef
) -> None:
    recorder = DjangoApplicationRecorder(DjangoDatastore(down_alias))
    started = time.monotonic()
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        with pytest.raises(OperationalError, match=f"Database '{down_alias}'"):
            recorder.insert_events(stored_events(1))
        with pytest.raises(OperationalError):
            recorder.max_notification_id()
    assert time.monotonic() - started < 10


class Counter(Aggregate):
    def __init__(self) -> None:
        self.count = 0

    def increment(self) -> None:
        self.trigger_event(self.Incremented)

    class Incremented(Aggregate.Event):
        def apply(self, aggregate: Counter) -> None:  # type: ignore[override]
            aggregate.count += 1


@pytest.mark.django_db
def test_an_application_selects_the_store_by_persistence_module(
    backend: Backend,
) -> None:
    app = Application[object](env={"PERSISTENCE_MODULE": "hero.persistence"})
    assert isinstance(app.recorder, DjangoApplicationRecorder)
    assert app.recorder.datastore.alias == backend.alias  # from HERO_DATABASE

    counter = Counter()
    counter.increment()
    app.save(counter)

    assert app.repository.get(counter.id).count == 1
    assert count_events(backend) == 2


def test_an_unknown_database_alias_is_a_clear_error(settings: object) -> None:
    settings.HERO_DATABASE = "nope"  # type: ignore[attr-defined]
    with pytest.raises(InfrastructureFactoryError, match="Set HERO_DATABASE to one of"):
        Application[object](env={"PERSISTENCE_MODULE": "hero.persistence"})


def test_an_unknown_record_purpose_is_a_clear_error() -> None:
    factory = DjangoFactory({})
    with pytest.raises(InfrastructureFactoryError, match="events and snapshots"):
        factory.aggregate_recorder("logs")


def test_migrations_own_the_schema() -> None:
    # CREATE_TABLE is accepted for compatibility; creating tables touches no
    # database (this test has no database access: any query would raise).
    factory = DjangoFactory({"CREATE_TABLE": "yes"})
    recorder = factory.application_recorder()
    recorder.create_table()  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="Database access not allowed"):
        connection.ensure_connection()


@pytest.mark.django_db(transaction=True)
def test_positions_keep_rising_and_sqlite_keeps_no_sequence_table_for_them(
    backend: Backend, recorder: DjangoProcessRecorder
) -> None:
    # Arrange: events committed, then a transaction whose events roll back.
    first = recorder.insert_events(stored_events(2))
    with pytest.raises(Rollback), transaction.atomic(using=backend.alias):
        recorder.insert_events(stored_events(2))
        raise Rollback

    # Act: more events after the rollback.
    later = recorder.insert_events(stored_events(2))

    # Assert: positions still rise; nothing was ever seen at a reused one.
    assert first is not None and later is not None
    assert later[0] > first[1] and later[1] == later[0] + 1
    positions = [n.id for n in recorder.select_notifications(start=None, limit=10)]
    assert positions == [*first, *later]
    if backend.name == "sqlite":
        # The id is the table's plain rowid: no AUTOINCREMENT, so an insert
        # writes no counter row in sqlite_sequence (one page fewer per commit).
        with connections[backend.alias].cursor() as cursor:
            for table in (
                "hero_stored_event",
                "hero_achievement_unlocked",
                "hero_achievement_count",
                "hero_achievement_progress",
            ):
                cursor.execute("SELECT sql FROM sqlite_master WHERE name = %s", [table])
                (sql,) = cursor.fetchone()
                assert '"id" integer NOT NULL PRIMARY KEY' in sql, sql
                assert "AUTOINCREMENT" not in sql, sql


@pytest.mark.django_db(transaction=True)
def test_awards_need_no_pipeline_mode(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: a libpq without pipeline mode (older than 14) on PostgreSQL.
    import psycopg

    monkeypatch.setattr(
        psycopg.Pipeline, "is_supported", classmethod(lambda cls: False)
    )

    def no_pipeline(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pipeline mode used where libpq has none")

    monkeypatch.setattr(psycopg.Connection, "pipeline", no_pipeline)
    user = make_user()

    # Act: a first award and an upgrade (statements sent one at a time).
    with CaptureQueriesContext(connections[backend.alias]) as captured:
        hero.achievements.unlock("score_changed", user=user, points=10)
        (outcome,) = hero.achievements.unlock("score_changed", user=user, points=100)

    # Assert: the same results, and the events, the lock (PostgreSQL: its
    # function) and
    # the views' writes all went to the database.
    assert (outcome.level, outcome.previous_level) == (2, 1)
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert "hero_ledger_entry" in sql and "hero_achievement_unlocked" in sql
    assert ("hero_lock_for_append" in sql) == (backend.name == "postgres")
    assert count_events(backend) == 2


@pytest.mark.django_db(transaction=True)
def test_hero_cursors_send_the_same_statements_to_logs_and_execute_wrappers(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: an execute wrapper that sees every statement, as a site's
    # instrumentation would, and a store cursor opened while nothing logs.
    user = make_user()
    wrapper_saw: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        wrapper_saw.append(sql)
        return execute(sql, params, many, context)

    datastore = DjangoDatastore(backend.alias)
    with datastore.cursor() as cursor:
        kind = type(cursor).__name__

    # Act: a first award with the wrapper installed (nothing logging), then an
    # upgrade with Django's query log on.
    db = connections[backend.alias]
    with db.execute_wrapper(spy):
        hero.achievements.unlock("score_changed", user=user, points=10)
    with CaptureQueriesContext(db) as captured:
        hero.achievements.unlock("score_changed", user=user, points=100)

    # Assert: on SQLite, hero's own cursor; the wrapper and the log each saw
    # every statement hero sent, with Django's placeholders as hero wrote them.
    assert (kind == "HeroSQLiteCursor") == (backend.name == "sqlite"), kind
    for seen in (wrapper_saw, [q["sql"] for q in captured.captured_queries]):
        writes = [sql for sql in seen if "INSERT" in sql or "UPDATE" in sql]
        assert any("hero_stored_event" in sql for sql in writes), seen
        assert any("hero_achievement_unlocked" in sql for sql in writes), seen
        assert any("hero_ledger_entry" in sql for sql in writes), seen
    assert all("%s" in sql and "?" not in sql for sql in wrapper_saw if "INSERT" in sql)
    assert count_events(backend) == 2


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_an_award_outside_a_transaction_begins_and_ends_its_own(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "sqlite":
        pytest.skip("hero begins its own transactions itself on SQLite")
    # Arrange: a user, and one whose row is gone (refused only at the commit,
    # where SQLite checks Django's deferred foreign keys).
    db = connections[backend.alias]
    user, gone = make_user(), make_user()
    type(gone)._default_manager.using(backend.alias).filter(pk=gone.pk).delete()

    # Act: an award outside any transaction, logged; one refused at the commit.
    with CaptureQueriesContext(db) as awarded:
        hero.achievements.unlock("score_changed", user=user, points=10)
    with CaptureQueriesContext(db) as refused, pytest.raises(InvalidUser):
        hero.achievements.unlock("score_changed", user=gone, points=10)

    # Assert: the log shows the transaction (in the connection's mode) around
    # hero's writes; the refused one was rolled back; the connection is in
    # autocommit, outside any transaction, and works on.
    sql = [query["sql"] for query in awarded.captured_queries]
    begin = sql.index("BEGIN IMMEDIATE")
    assert sql[-1] == "COMMIT", sql
    assert all("hero_" in statement for statement in sql[begin + 1 : -1]), sql
    assert "ROLLBACK" in [query["sql"] for query in refused.captured_queries]
    assert db.get_autocommit() and not db.in_atomic_block
    assert not db.connection.in_transaction
    assert count_events(backend) == 1
    (outcome,) = hero.achievements.unlock("score_changed", user=user, points=100)
    assert outcome.level == 2 and count_events(backend) == 2


@pytest.mark.django_db(transaction=True)
def test_hero_cursors_convert_placeholders_as_django_does(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: room for two conversions only, to see old ones dropped.
    monkeypatch.setattr(store_sqlite, "_QMARK_LIMIT", 2)
    datastore = DjangoDatastore(backend.alias)
    concat = "CONCAT(%s, %s)" if backend.name == "mysql" else "%s || %s"
    statements = [
        ("SELECT %s, '100%%'", ["a"], ("a", "100%")),
        (f"SELECT {concat}, '%%s'", ["b", "c"], ("bc", "%s")),
        ("SELECT %s + 1, 'x'", [41], (42, "x")),
    ]

    # Act: each statement twice (converted, then reused), and a batch.
    results = []
    with datastore.cursor() as cursor:
        for _ in range(2):
            for sql, params, _expected in statements:
                cursor.execute(sql, params)
                results.append(cursor.fetchone())
        cursor.execute("CREATE TEMPORARY TABLE t_hero_qmark (v text)")
        cursor.executemany("INSERT INTO t_hero_qmark VALUES (%s)", [["1%"], ["2"]])
        cursor.execute("SELECT v FROM t_hero_qmark ORDER BY v")
        batch = cursor.fetchall()
        cursor.execute("DROP TABLE t_hero_qmark")

    # Assert: the results Django's own cursor gives, literal %% included.
    expected = [tuple(e) for _sql, _params, e in statements] * 2
    assert [tuple(r) for r in results] == expected
    assert [tuple(r) for r in batch] == [("1%",), ("2",)]


@pytest.mark.django_db(transaction=True)
def test_hero_cursors_still_wrap_database_errors(backend: Backend) -> None:
    # Arrange: a statement the database refuses.
    datastore = DjangoDatastore(backend.alias)

    # Act: run it on a store cursor.
    with pytest.raises(IntegrityError) as raised, datastore.transaction() as cursor:
        cursor.execute(
            "INSERT INTO hero_tracking (application_name, notification_id) "
            "VALUES (%s, %s), (%s, %s)",
            ["same", 1, "same", 2],
        )

    # Assert: the store's error, from Django's wrapped one, as with any cursor.
    assert isinstance(raised.value.__cause__, db_utils.IntegrityError)
    assert TrackingPosition.objects.using(backend.alias).count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("projections", "notify", "announced"),
    [
        ("async", None, True),  # hero_project workers wait for announcements
        ("inline", None, False),  # nothing of hero's does
        ("inline", True, True),
        ("async", False, False),
    ],
)
def test_a_subscription_wakes_when_events_are_committed(
    backend: Backend,
    settings: Any,
    projections: str,
    notify: bool | None,
    announced: bool,
) -> None:
    # Arrange: a follower that has read everything, polling once a minute;
    # writers that announce their events or not.
    settings.HERO_PROJECTIONS = projections
    if notify is not None:
        settings.HERO_NOTIFY = notify
    recorder = DjangoApplicationRecorder(DjangoDatastore(backend.alias))
    recorder.insert_events(stored_events(1))
    subscription = PollingSubscription(recorder, gt=None, poll_interval=60.0)
    first = next(subscription)
    received: list[float] = []

    def follow() -> None:
        for _notification in subscription:  # ends when stopped
            received.append(time.monotonic())
            return

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.3)  # it has found nothing new and waits

    # Act: another event is committed.
    committed = time.monotonic()
    recorder.insert_events(stored_events(1))
    woken = backend.name == "postgres" and announced
    follower.join(timeout=5 if woken else 0.5)
    subscription.stop()
    follower.join(timeout=65)

    # Assert: on PostgreSQL an announcement woke it at once; without one, or
    # elsewhere, it only polls, and the minute had not passed.
    assert first.id >= 1
    if woken:
        assert received and received[0] - committed < 1.0
    else:
        assert received == []
