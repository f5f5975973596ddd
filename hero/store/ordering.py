"""The order in which events become visible: followers never see a position
filled in behind them.

A follower of the store (``hero_project``, ``subscribe()``, ``hero_rebuild``)
reads positions in increasing order and never looks back, so it must never
read past a position that may still be committed later. This module is the one
owner of that guarantee, per backend:

- **PostgreSQL**: writers do not wait for one another. A writer takes the
  table's ``ROW EXCLUSIVE`` lock (shared by all writers; :func:`hold_ordering_lock`
  with ``exclusive=False``), then reserves its positions from the table's
  sequence and marks the first with an advisory lock held until its
  transaction ends (:func:`reserve_positions`). A follower reads no further
  than the **horizon**, the highest position below every mark
  (:func:`below_horizon`). Reserving and reading the horizon take one short
  gate (a session advisory lock released before they return), so no reader
  sees the sequence past a position that is not marked yet. A rolled-back
  writer leaves a gap. A writer that reserves before it reads what it
  decides on writes only at positions past the events it read
  (:func:`positions_past`), so that an aggregate's events stay in order. A
  transaction holding the ``EXCLUSIVE`` lock (below) reads the horizon past
  other transactions' marks: no other writer is under
  way then, and PostgreSQL lets go of an ended transaction's advisory locks
  an instant after its table locks. What must not interleave with any append
  (a rebuild starting or finishing, re-keying) takes
  ``LOCK TABLE hero_stored_event IN EXCLUSIVE MODE``, which waits for the
  writers in progress and holds off new ones. Appends to one log (a user's
  trigger log) take turns on an advisory lock of that log's own
  (:func:`hold_log_locks`), so that writers of other logs never wait. Each
  lock is waited for at most ``HERO_LOCK_TIMEOUT`` seconds, then
  :class:`~hero.exceptions.StoreBusy`; the caller's own ``lock_timeout`` is
  put back right after.
- **MariaDB and MySQL**: one writer at a time, with an exclusive lock on the
  one row of ``hero_ordering_lock``, held until the transaction ends, waiting
  at most ``HERO_LOCK_TIMEOUT`` seconds (rounded up to whole seconds).
- **SQLite** has one writer at a time anyway: a transaction that began
  ``IMMEDIATE`` (hero's recommended ``transaction_mode``) or ``EXCLUSIVE``
  already holds the write lock; a ``DEFERRED`` one takes it at its first write,
  waiting up to the connection's ``timeout`` option.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.backends.utils import CursorWrapper

from hero.conf import conf


@dataclass(frozen=True)
class Followers:
    """What decides whether a writer of events may append alongside others on
    PostgreSQL: the tracking rows of the followers writers keep current
    (:mod:`hero.store.positions`), and whether this writer applies its events
    to them in its own transaction."""

    keys: list[str]
    markers: list[str]
    applies_inline: bool


def hold_ordering_lock(
    cursor: CursorWrapper, *, appending: Followers | None = None
) -> bool:
    """Hold the store's ordering lock until the cursor's transaction ends.

    Returns whether the transaction holds it now: always on PostgreSQL, and on
    SQLite when the transaction began ``IMMEDIATE`` or ``EXCLUSIVE``. Inside a
    pipeline (:func:`hero.store.postgres.pipelined`) the statements join the
    pipeline's round trip.

    On PostgreSQL a writer of events passes ``appending``, and takes the
    table's ``ROW EXCLUSIVE`` lock (the one its ``INSERT`` takes anyway, which
    other writers share) when its followers' positions stay right whatever
    other writers do meanwhile: it applies its events inline and every
    follower is :data:`~hero.store.positions.CURRENT`, or it leaves them to a
    worker and none is. Otherwise (a follower to catch up, or to mark as
    behind) it takes the ``EXCLUSIVE`` lock and appends alone, as everything
    that must not interleave with any append does (a rebuild starting or
    finishing, re-keying the chain). Positions change
    between those states only under the ``EXCLUSIVE`` lock, and
    ``hero_lock_for_append`` decides again if they changed while it waited,
    so the decision holds until the transaction ends. MariaDB, MySQL and
    SQLite have only the exclusive lock.
    """
    connection: Any = cursor.db
    if connection.vendor == "sqlite":
        return connection.transaction_mode in {"IMMEDIATE", "EXCLUSIVE"}
    if connection.vendor == "mysql":
        _hold_on_mysql(cursor)
        return True
    table = _events_table(connection)
    if appending is not None:
        # One statement: the function sets the wait and puts the caller's back.
        cursor.execute(
            "SELECT hero_lock_for_append(%s, %s, %s, %s)",
            [appending.keys, appending.markers, appending.applies_inline, _wait()],
        )
        return True
    with _waiting_at_most(cursor):
        cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
    return True


def hold_log_locks(cursor: CursorWrapper, log_ids: Iterable[UUID]) -> bool:
    """Keep appends to each of these logs in turn until the cursor's
    transaction ends: aggregates that are only ever appended to, at the
    version after their last (a user's trigger log), whose writers must never
    collide. Returns whether the transaction holds the locks now, as
    :func:`hold_ordering_lock` does.

    On PostgreSQL each log has an advisory lock of its own, so that a writer
    waits only for writers of the same log, and writers of other logs append
    alongside it; the events still reserve their positions as any others do.
    MariaDB, MySQL and SQLite have one writer at a time anyway: there it is
    the ordering lock.
    """
    connection: Any = cursor.db
    if connection.vendor != "postgresql":
        return hold_ordering_lock(cursor)
    keys = sorted({_log_key(log_id) for log_id in log_ids})
    with _waiting_at_most(cursor):
        # In one order, so that writers of several logs never deadlock.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, key) "
            "FROM unnest(%s::integer[]) AS key ORDER BY key",
            [LOG_LOCK_CLASS, keys],
        )
    return True


def _log_key(log_id: UUID) -> int:
    """A log's advisory lock key: 32 bits of its id (two logs that share
    them merely take turns)."""
    return int.from_bytes(log_id.bytes[:4], "big", signed=True)


def _wait() -> str:
    """``HERO_LOCK_TIMEOUT`` as PostgreSQL's ``lock_timeout`` takes it."""
    return f"{max(0, round(conf.HERO_LOCK_TIMEOUT * 1000))}ms"


@contextmanager
def _waiting_at_most(cursor: CursorWrapper) -> Iterator[None]:
    """PostgreSQL: the block's lock statements wait at most
    ``HERO_LOCK_TIMEOUT``, and the caller's ``lock_timeout`` is put back after
    them. (``SET LOCAL`` would last until the caller's transaction ends: the
    caller's value is kept in a setting of hero's own.) A lock not had in time
    fails the statement, and the transaction or savepoint with it."""
    cursor.execute(
        "SELECT set_config('hero.caller_lock_timeout', "
        "current_setting('lock_timeout'), true), "
        "set_config('lock_timeout', %s, true)",
        [_wait()],
    )
    yield
    cursor.execute(
        "SELECT set_config('lock_timeout', "
        "current_setting('hero.caller_lock_timeout'), true)"
    )


#: innodb_lock_wait_timeout's largest value: "wait for ever".
_MYSQL_FOREVER = 1073741824


def _hold_on_mysql(cursor: CursorWrapper) -> None:
    """On MariaDB and MySQL, an exclusive lock on the one row of
    ``hero_ordering_lock`` (made if missing): ``LOCK TABLES`` would commit the
    caller's transaction. The wait is ``innodb_lock_wait_timeout`` (whole
    seconds), set for the lock's statement alone on MariaDB (``SET STATEMENT``);
    on MySQL set for the session and put back after, also when it fails."""
    timeout = conf.HERO_LOCK_TIMEOUT
    seconds = _MYSQL_FOREVER if timeout <= 0 else max(1, math.ceil(timeout))
    if cursor.db.mysql_is_mariadb:
        # One statement: MariaDB sets the wait for it alone.
        cursor.execute(
            "SET STATEMENT innodb_lock_wait_timeout = %s FOR "
            "INSERT INTO hero_ordering_lock (id) VALUES (%s) "
            "ON DUPLICATE KEY UPDATE id = id",
            [seconds, 1],
        )
        return
    cursor.execute(
        "SET @hero_caller_lock_wait = @@innodb_lock_wait_timeout, "
        "SESSION innodb_lock_wait_timeout = %s",
        [seconds],
    )
    try:
        cursor.execute(
            "INSERT INTO hero_ordering_lock (id) VALUES (%s) "
            "ON DUPLICATE KEY UPDATE id = id",
            [1],
        )
    finally:
        cursor.execute("SET SESSION innodb_lock_wait_timeout = @hero_caller_lock_wait")


#: The class id of hero's advisory locks on PostgreSQL ("hero" in ASCII): a
#: writer's mark on its first reserved position, and the gate that reserving
#: positions and reading the horizon take for a few statements (migration
#: ``0003_scale_out`` holds the SQL functions that take them).
LOCK_CLASS = 1751478895

#: The class id of the advisory locks of appends to one log
#: (:func:`hold_log_locks`; "hrtl" in ASCII): apart from the marks, which the
#: horizon reads by :data:`LOCK_CLASS`.
LOG_LOCK_CLASS = 1752331372

#: The advisory lock that lets one process at a time link events to the chain
#: (:func:`hero.store.chain.link_committed`), a bigint key of hero's class id.
LINKER_LOCK = LOCK_CLASS << 32

#: The condition that keeps a PostgreSQL reader of the log at or below the
#: horizon read by the statement before it (:func:`read_horizon`).
BELOW_HORIZON = "id <= current_setting('hero.horizon')::bigint"


@contextmanager
def below_horizon(cursor: CursorWrapper) -> Iterator[str]:
    """PostgreSQL: read the horizon, the highest position below every position
    still reserved by another transaction that has not ended (the reader's own
    events are visible to it already; for a reader holding the ``EXCLUSIVE``
    lock, no other writer is under way); return the condition
    that keeps the next statement on the cursor's connection at or below it.

    Every position up to the horizon is committed or will never be (its
    writer rolled back), so a follower that reads no further never sees a
    position filled in behind it. The condition must go in a statement of its
    own after this one (it may be sent in the same pipeline): in READ COMMITTED
    that statement's snapshot is taken after the horizon was read, and sees
    every event up to it. Inside a pipeline the horizon's own result is read
    after the block's (a cursor of its own keeps the results apart).
    """
    with cursor.db.cursor() as horizon:
        horizon.execute("SELECT hero_horizon()")
        yield BELOW_HORIZON
        horizon.fetchone()


def reserve_positions(cursor: CursorWrapper, count: int) -> Any:
    """PostgreSQL: queue taking the next ``count`` positions of the events'
    sequence, consecutive and in order, the first marked as reserved until the
    transaction ends; return the cursor that will hold them (one row each).

    Call it after :func:`hold_ordering_lock`: a writer kept waiting for a
    rebuild then holds no mark that would stop followers.
    """
    reserved = cursor.db.cursor()
    reserved.execute("SELECT hero_reserve_positions(%s)", [count])
    return reserved


def positions_past(
    cursor: CursorWrapper, reserved: list[int], count: int, after: int
) -> list[int]:
    """PostgreSQL: ``count`` positions past ``after``, the highest position
    of the events a writer read to decide, taken from those it ``reserved``
    (queued before that read, in the same round trip) and, where they fall
    short, reserved now.

    A position reserved before the read can come before an event another
    writer committed in between: an aggregate's event decided on it would
    then be stored before the one it follows. Such positions are left as
    gaps, as a rolled-back writer leaves them; positions reserved after the
    read come after every event it saw."""
    usable = [position for position in reserved if position > after]
    if count > len(usable):
        more = reserve_positions(cursor, count - len(usable))
        with more:
            usable += [int(position) for (position,) in more.fetchall()]
    return usable[:count]


def is_lock_timeout(error: BaseException) -> bool:
    """Whether a database error says the ordering lock (or SQLite's write
    lock) was not free in time."""
    cause = error.__cause__
    if getattr(cause, "sqlstate", None) == "55P03":  # PostgreSQL: lock_not_available
        return True
    if type(cause).__module__.startswith("MySQLdb") and getattr(cause, "args", ())[
        :1
    ] == (1205,):
        return True  # ER_LOCK_WAIT_TIMEOUT
    return type(cause).__module__ == "sqlite3" and str(cause) == "database is locked"


_quoted_tables: dict[str, str] = {}


def _events_table(connection: Any) -> str:
    """The events table's name, quoted for the connection's backend."""
    table = _quoted_tables.get(connection.vendor)
    if table is None:
        # Lazy: the store is importable before Django has loaded the models.
        from hero.models import StoredEvent

        table = connection.ops.quote_name(StoredEvent._meta.db_table)
        _quoted_tables[connection.vendor] = table
    return str(table)
