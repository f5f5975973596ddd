"""hero.store.ordering: one function takes the ordering lock, and a write kept
waiting for it past the timeout gets a clear error and records nothing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from django.db import OperationalError, connections, transaction
from django.test import override_settings

import hero
from hero.events import Outcome
from hero.exceptions import StoreBusy
from hero.ledger import get_ledger
from hero.models import LedgerEntry, StoredEvent
from hero.store.chain import link_committed
from hero.store.ordering import LOCK_CLASS
from tests.conftest import Backend
from tests.trust_helpers import verify_passes

HERO = Path(__file__).resolve().parent.parent / "hero"


@contextmanager
def lock_held_elsewhere(backend: Backend) -> Iterator[None]:
    """Another connection holds the store's ordering lock (SQLite: the write lock)."""
    config = connections[backend.alias].settings_dict
    if backend.name == "postgres":
        other: Any = psycopg.connect(
            host=config["HOST"],
            port=config["PORT"] or None,
            user=config["USER"],
            dbname=config["NAME"],
        )
        other.execute("LOCK TABLE hero_stored_event IN EXCLUSIVE MODE")
    elif backend.name == "mysql":
        import MySQLdb

        other = MySQLdb.connect(
            host=config["HOST"] or "127.0.0.1",
            port=int(config["PORT"] or 3306),
            user=config["USER"],
            password=config["PASSWORD"],
            database=config["NAME"],
        )
        other.cursor().execute(
            "INSERT INTO hero_ordering_lock (id) VALUES (1) "
            "ON DUPLICATE KEY UPDATE id = id"
        )
    else:
        other = sqlite3.connect(config["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK") if backend.name == "sqlite" else other.rollback()
        other.close()


@contextmanager
def sqlite_busy_timeout(backend: Backend, milliseconds: int) -> Iterator[None]:
    """SQLite waits for its write lock as long as the connection's timeout."""
    if backend.name != "sqlite":
        yield
        return
    connection = connections[backend.alias]
    connection.ensure_connection()
    connection.connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
    try:
        yield
    finally:
        timeout = connection.settings_dict["OPTIONS"].get("timeout", 5)
        connection.connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


@pytest.mark.django_db(transaction=True)
def test_a_write_kept_waiting_past_the_lock_timeout_records_nothing(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: a user, and another transaction that holds the ordering lock.
    user = make_user()
    with (
        override_settings(HERO_LOCK_TIMEOUT=0.2),
        sqlite_busy_timeout(backend, 200),
        lock_held_elsewhere(backend),
    ):
        # Act: an award has to wait for the lock.
        started = time.monotonic()
        with pytest.raises(StoreBusy, match="ordering lock") as error:
            hero.achievements.unlock("score_changed", user=user, points=100)
        waited = time.monotonic() - started
    # Assert: a clear hero error after hero's wait (MariaDB and MySQL: whole
    # seconds; their own default is 50 s), nothing recorded; once free, the
    # award goes in.
    assert waited < 10
    setting = "'timeout' database option" if backend.name == "sqlite" else "0.2s"
    assert setting in str(error.value)
    assert not StoredEvent.objects.using(backend.alias).exists()
    outcomes = hero.achievements.unlock("score_changed", user=user, points=100)
    assert outcomes == [Outcome("points", 2, None)]


def test_the_callers_own_lock_timeout_applies_again_after_the_lock(
    backend: Backend, make_user: Any
) -> None:
    if backend.name == "sqlite":
        pytest.skip("SQLite's wait is the connection's timeout, which hero leaves")
    own = {
        "postgres": (
            "SET LOCAL lock_timeout = '1234ms'",
            "SHOW lock_timeout",
            "1234ms",
        ),
        "mysql": (
            "SET SESSION innodb_lock_wait_timeout = 7",
            "SELECT @@innodb_lock_wait_timeout",
            7,
        ),
    }
    setting, reading, value = own[backend.name]
    # Arrange: the caller's transaction has a lock timeout of its own.
    user = make_user()
    with transaction.atomic(using=backend.alias):
        with connections[backend.alias].cursor() as cursor:
            cursor.execute(setting)
            # Act: an award takes the ordering lock with hero's timeout.
            hero.achievements.unlock("score_changed", user=user, points=100)
            # Assert: the rest of the caller's transaction has its own again.
            cursor.execute(reading)
            assert cursor.fetchone() == (value,)


def test_only_the_ordering_module_takes_the_lock() -> None:
    # The ordering guarantee depends on one function: nothing else takes the
    # lock, or calls the SQL functions that take it and reserve positions
    # (which the migration that defines them holds).
    def takers(*needles: str) -> list[str]:
        return sorted(
            str(path.relative_to(HERO.parent))
            for path in HERO.rglob("*.py")
            if any(needle in path.read_text() for needle in needles)
            and "migrations" not in path.parts
        )

    assert takers("LOCK TABLE", "hero_ordering_lock (") == ["hero/store/ordering.py"]
    assert takers("hero_lock_for_append(", "hero_reserve_positions(") == [
        "hero/store/ordering.py"
    ]


@contextmanager
def position_reserved_elsewhere(backend: Backend) -> Iterator[tuple[Any, int]]:
    """Another connection's transaction that has reserved the next position
    and not ended: (the connection, the position)."""
    other = connections.create_connection(backend.alias)
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT hero_reserve_positions(1)")
            (position,) = cursor.fetchone()
        yield other, int(position)
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_followers_never_see_a_position_filled_in_behind_them(
    backend: Backend, make_user: Any, ending: str
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL writes events in transactions at once")
    recorder = get_ledger().recorder
    with position_reserved_elsewhere(backend) as (other, reserved):
        # Arrange: an award commits at a position after the one reserved.
        hero.achievements.unlock("score_changed", user=make_user(), points=10)
        awarded = StoredEvent.objects.using(backend.alias).order_by("id").last()
        assert awarded is not None and awarded.id > reserved

        # Act: followers read the log while the reserving transaction is open.
        seen = [n.id for n in recorder.select_notifications(0, 100)]
        last = recorder.max_notification_id()

        # Assert: they stop before the reserved position...
        assert reserved not in seen and awarded.id not in seen
        assert all(position < reserved for position in seen)
        assert (last or 0) < reserved

        # ...and read past it once its transaction ends, in order.
        if ending == "commit":
            with other.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO hero_stored_event "
                    "(id, originator_id, originator_version, topic, state) "
                    "VALUES (%s, %s, 1, 'elsewhere', '')",
                    [reserved, uuid4()],
                )
            other.commit()
        else:
            other.rollback()
    after = [n.id for n in recorder.select_notifications(0, 100)]
    assert after == sorted(after) and awarded.id in after
    assert (reserved in after) == (ending == "commit")
    assert recorder.max_notification_id() == awarded.id


@contextmanager
def advisory_lock_held_elsewhere(
    backend: Backend, key: int, lock_class: int = LOCK_CLASS
) -> Iterator[None]:
    """Another connection holds hero's advisory lock ``(lock_class, key)``
    for its session: with key 0 the gate that reading the horizon takes
    (``hero_horizon`` waits for it; nothing else in a linker does); with a
    position, that position's mark, its writer having committed already:
    what every writer's commit leaves for an instant, since PostgreSQL lets go
    of a transaction's table locks before its advisory locks; with
    ``hero.store.ordering.LOG_LOCK_CLASS``, the lock of a user's trigger log."""
    other = connections.create_connection(backend.alias)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [lock_class, key])
        yield
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_writer_catching_up_alone_reads_past_marks_of_writers_that_have_ended(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL marks reserved positions")
    # Arrange: the read models current, then an award written without them
    # (async), which marks them behind; its writer has committed but its mark
    # is still there.
    hero.achievements.unlock("score_changed", user=make_user(), points=10)
    with override_settings(HERO_PROJECTIONS="async"):
        hero.achievements.unlock("score_changed", user=make_user(), points=10)
    missed = StoredEvent.objects.using(backend.alias).order_by("id").last()
    assert missed is not None
    with advisory_lock_held_elsewhere(backend, missed.id):
        # Act: an inline award, which catches the read models up, holding the
        # store alone (no other writer can be under way).
        hero.achievements.unlock("score_changed", user=make_user(), points=10)
        # A follower, which does not hold the store, still stops below the mark.
        followed = get_ledger().recorder.max_notification_id()

    # Assert: the writer applied the award before its own, and left nothing
    # behind.
    assert (followed or 0) < missed.id
    assert LedgerEntry.objects.using(backend.alias).filter(position=missed.id).exists()
    verify_passes()


@contextmanager
def positions_from(backend: Backend, last: int) -> Iterator[None]:
    """The events' sequence as if ``last`` positions had been given out; put
    back afterwards (sequences ignore rollbacks and flushes)."""
    with connections[backend.alias].cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence('hero_stored_event', 'id')")
        (sequence,) = cursor.fetchone()
        cursor.execute(f"SELECT last_value FROM {sequence}")
        (before,) = cursor.fetchone()
        cursor.execute("SELECT setval(%s, %s)", [sequence, last])
    try:
        yield
    finally:
        with connections[backend.alias].cursor() as cursor:
            cursor.execute("SELECT setval(%s, %s)", [sequence, before])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("last", [2**31 - 1, 2**32 - 1, 2**32 + 2**31 - 1])
def test_positions_past_32_bits_are_reserved_and_followed(
    backend: Backend, make_user: Any, last: int
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL marks reserved positions")
    recorder = get_ledger().recorder
    with positions_from(backend, last):
        with position_reserved_elsewhere(backend) as (other, reserved):
            # Arrange: a position past 2^31 (2^32 itself is left as a gap, its
            # mark reading as the gate's); an award commits after it.
            assert reserved == (last + 2 if (last + 1) % 2**32 == 0 else last + 1)
            assert hero.achievements.unlock(
                "score_changed", user=make_user(), points=10
            ) == [Outcome("points", 1, None)]

            # Act
            seen = [n.id for n in recorder.select_notifications(last - 5, 100)]
            horizon = recorder.max_notification_id()

            # Assert: followers stop just before the reserved position...
            assert seen == [] and (horizon or 0) < reserved
            other.rollback()
        # ...and read the award once the reservation ends.
        awarded = [n.id for n in recorder.select_notifications(last - 5, 100)]
        assert len(awarded) == 1 and awarded[0] > reserved
        verify_passes()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("rows", "applies_inline", "alongside"),
    [
        ({"a@hero": -1, "b@hero": -1}, True, True),
        ({"a@hero": -1, "b@hero": 7}, True, False),  # one to catch up
        ({"a@hero": -1}, True, False),  # one never written
        ({"a@hero": -1, "b@hero": -1, "b@hero#rebuild": 0}, True, False),
        ({"a@hero": 7, "b@hero": 7}, False, True),  # async: both behind already
        ({"a@hero": 7, "b@hero": -1}, False, False),  # async: one to mark behind
        ({"a@hero": 7, "b@hero": 7, "a@hero#rebuild": 0}, False, True),
        ({"other@hero": -1}, False, True),
    ],
    ids=[
        "inline-all-current",
        "inline-one-behind",
        "inline-one-missing",
        "inline-one-rebuilding",
        "async-none-current",
        "async-one-current",
        "async-rebuilding",
        "async-no-rows",
    ],
)
def test_a_writer_appends_alongside_others_only_when_no_follower_needs_it_alone(
    backend: Backend, rows: dict[str, int], applies_inline: bool, alongside: bool
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL writers append alongside one another")
    # Arrange: the followers' rows (position -1: current).
    with connections[backend.alias].cursor() as cursor:
        for key, position in rows.items():
            cursor.execute(
                "INSERT INTO hero_tracking (application_name, notification_id) "
                "VALUES (%s, %s)",
                [key, position],
            )

        # Act: the database's answer for followers a and b, then the lock
        # taken on it.
        cursor.execute(
            "SELECT hero_may_append_alongside(%s, %s, %s)",
            [
                ["a@hero", "b@hero"],
                ["a@hero#rebuild", "b@hero#rebuild"],
                applies_inline,
            ],
        )
        (answer,) = cursor.fetchone()
        cursor.execute("SELECT hero_may_append_alongside(%s, %s, %s)", [[], [], False])
        (nobody,) = cursor.fetchone()
        with transaction.atomic(using=backend.alias):
            cursor.execute(
                "SELECT hero_lock_for_append(%s, %s, %s, %s)",
                [
                    ["a@hero", "b@hero"],
                    ["a@hero#rebuild", "b@hero#rebuild"],
                    applies_inline,
                    "1s",
                ],
            )
            (returned,) = cursor.fetchone()
            cursor.execute(
                "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() "
                "AND relation = 'hero_stored_event'::regclass"
            )
            modes = {mode for (mode,) in cursor.fetchall()}

    # Assert: alongside (the writers' shared lock) only when every follower
    # stays right whatever the others do; with no follower, always.
    assert (answer, returned, nobody) == (alongside, alongside, True)
    assert modes == {"RowExclusiveLock" if alongside else "ExclusiveLock"}


@contextmanager
def lock_timeout(backend: Backend, value: str) -> Iterator[None]:
    """The test connection waits for a lock at most ``value``."""
    with connections[backend.alias].cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, false)", [value])
    try:
        yield
    finally:
        with connections[backend.alias].cursor() as cursor:
            cursor.execute("RESET lock_timeout")


@pytest.mark.django_db(transaction=True)
def test_a_linker_reads_the_horizon_only_past_a_gap(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    # Arrange: an empty store; a position still being written, an award after it.
    with position_reserved_elsewhere(backend) as (other, reserved):
        hero.achievements.unlock("score_changed", user=make_user("ann"), points=10)

        # Act / assert: with no link yet the linker reads the horizon, which
        # stops it before the reserved position.
        assert link_committed(backend.alias) == 0
        other.rollback()

    # Arrange: another award, which links the first on the way; the writer
    # cannot link its own event.
    hero.achievements.unlock("score_changed", user=make_user("bob"), points=10)
    assert StoredEvent.objects.filter(chain__isnull=True).count() == 1

    # Act / assert: the event follows the last link, so the linker links it
    # without the horizon (reading it would wait for the gate, past the timeout).
    with advisory_lock_held_elsewhere(backend, 0), lock_timeout(backend, "1s"):
        assert link_committed(backend.alias) == 1

    with position_reserved_elsewhere(backend) as (other, reserved):
        # Arrange: an award after a position still being written.
        hero.achievements.unlock("score_changed", user=make_user("cy"), points=10)
        assert StoredEvent.objects.get(chain__isnull=True).id > reserved

        # Act / assert: past the gap the linker reads the horizon (it waits
        # for the gate), which stops it before the reserved position...
        with advisory_lock_held_elsewhere(backend, 0), lock_timeout(backend, "200ms"):
            with pytest.raises(OperationalError, match="lock timeout"):
                link_committed(backend.alias)
        assert link_committed(backend.alias) == 0
        other.rollback()

    # ...and lets it link past the position once its writer has rolled back.
    assert link_committed(backend.alias) == 1
    assert not StoredEvent.objects.filter(chain__isnull=True).exists()
    verify_passes()


@pytest.mark.django_db(transaction=True)
def test_a_logged_call_kept_waiting_for_its_users_log_records_nothing(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("elsewhere a logged call waits for the ordering lock, as above")
    from hero.events import trigger_log_id
    from hero.store.ordering import LOG_LOCK_CLASS, _log_key

    # Arrange: the trigger log on, and another transaction holding the lock
    # of one user's log (as a call of that user's would, until it ends).
    settings.HERO_RECORD_TRIGGERS = True
    user, other_user = make_user(), make_user()
    key = _log_key(trigger_log_id(str(user.pk)))
    with (
        advisory_lock_held_elsewhere(backend, key, LOG_LOCK_CLASS),
        override_settings(HERO_LOCK_TIMEOUT=0.2),
    ):
        # Act / assert: another user's call goes in at once...
        hero.achievements.unlock("score_changed", user=other_user, points=10)
        # ...and this user's waits for the lock, then fails clearly.
        with pytest.raises(StoreBusy, match=r"0\.2s") as error:
            hero.achievements.unlock("score_changed", user=user, points=10)
    assert "the same user's log" in str(error.value)
    logged = StoredEvent.objects.filter(originator_id=trigger_log_id(str(user.pk)))
    assert not logged.exists()

    # Once the lock is free, the call goes in, logged.
    hero.achievements.unlock("score_changed", user=user, points=10)
    assert logged.count() == 1
