"""The event store: eventsourcing's recorders on Django's own database connection.

Select it the library's way, with ``PERSISTENCE_MODULE="hero.persistence"`` in an
application's environment. Events are written through ``django.db.connections``
inside ``transaction.atomic()``, so they join the caller's transaction: when a
view's transaction rolls back, the events it recorded roll back with it.

The tables are declared as Django models in :mod:`hero.models` and created by
migrations (``manage.py migrate``), never by the recorders.

Notification ids are committed in order. On PostgreSQL an insert into the events
table first takes ``LOCK TABLE ... IN EXCLUSIVE MODE`` (held until the
transaction ends) so that ids are allocated and committed one writer at a time;
a reader following the log never sees id ``n + 1`` before id ``n``. SQLite
allows one writer at a time anyway.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from hashlib import sha256
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from django.conf import settings
from django.db import connections, transaction
from django.db import utils as db_utils
from django.db.backends.utils import CursorWrapper
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatabaseError,
    DataError,
    InfrastructureFactory,
    InfrastructureFactoryError,
    IntegrityError,
    InterfaceError,
    InternalError,
    Notification,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    Recorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic

from hero.conf import conf

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models import Model

_Recorder = TypeVar("_Recorder", bound="DjangoRecorder")

#: Rows per INSERT statement; keeps parameters well under every backend's limit.
INSERT_CHUNK_SIZE = 500

#: The link before the first event of the store.
GENESIS = bytes(32)


def link(previous: bytes | None, event: StoredEvent) -> bytes:
    """The chain value of ``event``: SHA-256 over the previous event's chain
    value and this event's aggregate, version, topic and state, so that editing,
    deleting or reordering any stored event breaks every link after it."""
    originator = event.originator_id
    uuid = originator if isinstance(originator, UUID) else UUID(str(originator))
    return _link(
        previous, uuid.bytes, event.originator_version, event.topic, event.state
    )


def _link(
    previous: bytes | None, uuid: bytes, version: int, topic: str, state: bytes
) -> bytes:
    encoded = topic.encode()
    digest = sha256(previous or GENESIS)
    digest.update(uuid)
    digest.update(version.to_bytes(8, "big", signed=True))
    digest.update(len(encoded).to_bytes(4, "big"))
    digest.update(encoded)
    digest.update(state)
    return digest.digest()


class _SQLiteChain(threading.local):
    """SQL functions that compute the chain inside SQLite's INSERT statement, so
    that reading the last link and writing the next take one statement (and the
    write lock is taken before anything is read)."""

    previous: bytes = GENESIS

    def start(self, previous: bytes | None, *fields: Any) -> bytes:
        self.previous = previous or GENESIS
        return self.next(*fields)

    def next(self, originator: str, version: int, topic: str, state: bytes) -> bytes:
        self.previous = link(
            self.previous, StoredEvent(originator, version, topic, state)
        )
        return self.previous


_sqlite_chain = _SQLiteChain()


def _register_sqlite_functions(wrapper: Any) -> None:
    """Register hero's chain functions on the wrapper's current connection."""
    raw = wrapper.connection
    if getattr(wrapper, "_hero_chain_connection", None) is not raw:
        raw.create_function("hero_chain_start", 5, _sqlite_chain.start)
        raw.create_function("hero_chain_next", 4, _sqlite_chain.next)
        wrapper._hero_chain_connection = raw


# Django's wrappers of DB-API errors, most specific first, and the eventsourcing
# errors that callers of a recorder expect instead.
_ERROR_TRANSLATIONS: tuple[tuple[type[Exception], type[PersistenceError]], ...] = (
    (db_utils.IntegrityError, IntegrityError),
    (db_utils.DataError, DataError),
    (db_utils.OperationalError, OperationalError),
    (db_utils.InternalError, InternalError),
    (db_utils.ProgrammingError, ProgrammingError),
    (db_utils.NotSupportedError, NotSupportedError),
    (db_utils.DatabaseError, DatabaseError),
    (db_utils.InterfaceError, InterfaceError),
    (db_utils.Error, PersistenceError),
)


class VersionConflict(IntegrityError):
    """An event was refused because its aggregate already has an event at that
    version: another writer recorded a change of the same aggregate first."""


class translate_errors:
    """Re-raise Django's database errors as eventsourcing's persistence errors."""

    __slots__ = ("alias",)

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if isinstance(error, db_utils.Error):
            for django_error, eventsourcing_error in _ERROR_TRANSLATIONS:
                if isinstance(error, django_error):
                    raise eventsourcing_error(
                        f"Database {self.alias!r}: {error}".strip()
                    ) from error


def pipelined(cursor: CursorWrapper) -> AbstractContextManager[Any]:
    """On PostgreSQL (psycopg 3), send the block's statements without waiting
    for each one's result: statements whose results are not read take one
    round trip to the server together, instead of one each. Elsewhere, and
    with psycopg 2 or a libpq older than 14 (no pipeline mode), the block runs
    as it is."""
    raw = cursor.db.connection
    if cursor.db.vendor != "postgresql" or not _pipelines_supported(raw):
        return nullcontext()  # no generator to run on SQLite's hot path
    return _pipeline(cursor.db, raw)


@contextmanager
def _pipeline(wrapper: Any, raw: Any) -> Iterator[None]:
    with wrapper.wrap_database_errors, raw.pipeline():
        yield


def _pipelines_supported(raw: Any) -> bool:
    if not hasattr(raw, "pipeline"):
        return False  # psycopg 2
    from psycopg import Pipeline

    return bool(Pipeline.is_supported())


def open_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """``connection.cursor()``; on Django's SQLite backend, while Django is not
    logging queries, a cursor that sends hero's statements more directly.

    Django's SQLite cursor rewrites the ``%s`` placeholders of every statement
    with a regular expression, each time, under several layers of wrappers.
    hero's statements are few and fixed: its cursor keeps each conversion
    (Django's own) and executes it on the driver's cursor, inside Django's
    error wrapping. A logging cursor (``DEBUG``, ``CaptureQueriesContext``) is
    returned as it is, and with execute wrappers installed hero's cursor goes
    through them as Django's does."""
    cursor = connection.cursor()
    if connection.vendor == "sqlite" and type(cursor) is CursorWrapper:
        fast = _fast_sqlite_cursor()
        if type(cursor.cursor) is fast.driver_cursor:  # Django's own, not a subclass
            return cast(CursorWrapper, fast(cursor.cursor, connection))
    return cursor


_QMARK_LIMIT = 1024  # distinct statements kept; hero sends far fewer


@functools.cache
def _fast_sqlite_cursor() -> Any:
    from collections.abc import Mapping
    from sqlite3 import Cursor

    from django.db.backends.sqlite3.base import SQLiteCursorWrapper

    converted: dict[str, str] = {}
    execute, executemany = Cursor.execute, Cursor.executemany

    def qmark(raw: SQLiteCursorWrapper, sql: str) -> str:
        result = converted.get(sql)
        if result is None:
            if len(converted) >= _QMARK_LIMIT:
                converted.clear()
            result = converted[sql] = raw.convert_query(sql)
        return result

    class HeroSQLiteCursor(CursorWrapper):
        """Django's cursor wrapper, minus the work that adds nothing for
        statements in Django's ``format`` style with positional parameters."""

        driver_cursor = SQLiteCursorWrapper

        # Statements for SQLite are strings; the stubs' base class also takes
        # psycopg's composed SQL, which never comes here.
        def execute(self, sql: str, params: Any = None) -> Any:  # type: ignore[override]
            db, raw = self.db, self.cursor
            if params is None or isinstance(params, Mapping) or db.execute_wrappers:
                return super().execute(sql, params)
            db.validate_no_broken_transaction()
            with db.wrap_database_errors:
                return execute(raw, qmark(raw, sql), params)

        def executemany(self, sql: str, param_list: Any) -> Any:  # type: ignore[override]
            db, raw = self.db, self.cursor
            if (
                not isinstance(param_list, list)
                or (param_list and isinstance(param_list[0], Mapping))
                or db.execute_wrappers
            ):
                return super().executemany(sql, param_list)
            db.validate_no_broken_transaction()
            with db.wrap_database_errors:
                return executemany(raw, qmark(raw, sql), param_list)

    return HeroSQLiteCursor


# The database alias, and the cursor, of the atomic block hero itself opened.
_owned_atomic: ContextVar[tuple[str, CursorWrapper] | None] = ContextVar(
    "hero_owned_atomic", default=None
)


class DjangoDatastore:
    """One Django database alias, and transactions that join the caller's."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        # Facts of the backend, fixed per alias (the connection is per thread).
        wrapper = connections[alias]
        self.vendor: str = wrapper.vendor
        self.native_uuid: bool = wrapper.features.has_native_uuid_field

    @contextmanager
    def owned_transaction(self) -> Iterator[None]:
        """An atomic block (a savepoint in the caller's transaction, if any)
        inside which hero's own writes share one cursor and need no atomic
        blocks of their own: a failure anywhere in it rolls all of it back."""
        with (
            transaction.atomic(using=self.alias),
            open_cursor(self.connection) as cursor,
        ):
            token = _owned_atomic.set((self.alias, cursor))
            try:
                yield
            finally:
                _owned_atomic.reset(token)

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @contextmanager
    def transaction(self) -> Iterator[CursorWrapper]:
        """A cursor in an atomic block: a new transaction, or a savepoint in the
        caller's, rolled back (and nothing written) if anything inside fails."""
        owned = _owned_atomic.get()
        if owned is not None and owned[0] == self.alias:
            with translate_errors(self.alias):
                yield owned[1]
            return
        with (
            translate_errors(self.alias),
            transaction.atomic(using=self.alias),
            open_cursor(self.connection) as cursor,
        ):
            yield cursor

    @contextmanager
    def cursor(self) -> Iterator[CursorWrapper]:
        """A cursor for reads, in the caller's transaction if there is one."""
        with translate_errors(self.alias), open_cursor(self.connection) as cursor:
            yield cursor


class DjangoRecorder(Recorder):
    """Base of hero's recorders: SQL on the tables declared in :mod:`hero.models`."""

    def __init__(
        self, datastore: DjangoDatastore, events_model: type[Model] | None = None
    ) -> None:
        from hero.models import StoredEvent as StoredEventModel
        from hero.models import TrackingPosition

        self.datastore = datastore
        self.events_model = events_model or StoredEventModel
        # Inserts into the notification log are serialised on PostgreSQL (see the
        # module docstring); snapshots have no notification ids to keep in order.
        self.serialise_inserts = self.events_model is StoredEventModel
        ops = datastore.connection.ops
        self.events_table = ops.quote_name(self.events_model._meta.db_table)
        self.tracking_table = ops.quote_name(TrackingPosition._meta.db_table)

    def create_table(self) -> None:
        """Do nothing: hero's tables are created by Django migrations."""

    def _db_uuid(self, value: UUID | str) -> UUID | str:
        uuid = value if isinstance(value, UUID) else UUID(str(value))
        return uuid if self.datastore.native_uuid else uuid.hex

    @staticmethod
    def _py_uuid(value: UUID | str) -> UUID:
        return value if isinstance(value, UUID) else UUID(value)

    @staticmethod
    def _bytes(value: bytes | memoryview) -> bytes:
        return value if isinstance(value, bytes) else bytes(value)


class DjangoAggregateRecorder(DjangoRecorder, AggregateRecorder):
    """Records and selects the events of aggregates."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self.datastore.transaction() as cursor:
            self._insert_events(cursor, stored_events, **kwargs)
        return None

    def _insert_events(
        self, cursor: CursorWrapper, stored_events: Sequence[StoredEvent], **_: Any
    ) -> list[int]:
        """Insert in multi-row statements; return the new rows' ids in order."""
        try:
            return self._insert_rows(cursor, stored_events)
        except db_utils.IntegrityError as error:
            # The only constraint an event can break: its version is taken.
            raise VersionConflict(
                f"Database {self.datastore.alias!r}: {error}"
            ) from error

    def _insert_rows(
        self, cursor: CursorWrapper, stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        if not stored_events:
            return []
        # The notification log is hash-chained (see link()). On PostgreSQL the
        # last link is read under the lock that orders positions; on SQLite the
        # INSERT itself computes the links with hero's SQL functions.
        chained = self.serialise_inserts
        if (
            chained
            and len(stored_events) == 1
            and self.datastore.vendor == "postgresql"
        ):
            return [self._insert_one_on_postgresql(cursor, stored_events[0])]
        in_sql = chained and self.datastore.vendor == "sqlite"
        previous = GENESIS
        if in_sql:
            _register_sqlite_functions(cursor.db)
        elif chained:
            # Taking the lock and reading the last link: one round trip.
            with pipelined(cursor):
                if self.datastore.vendor == "postgresql":
                    cursor.execute(f"LOCK TABLE {self.events_table} IN EXCLUSIVE MODE")
                cursor.execute(
                    f"SELECT chain FROM {self.events_table} ORDER BY id DESC LIMIT 1"
                )
                row = cursor.fetchone()
            previous = self._bytes(row[0]) if row and row[0] is not None else GENESIS
        columns = "originator_id, originator_version, topic, state"
        if chained:
            columns += ", chain"
        first_row = (
            "(%s, %s, %s, %s, hero_chain_start((SELECT chain FROM "
            f"{self.events_table} ORDER BY id DESC LIMIT 1), %s, %s, %s, %s))"
        )
        next_row = "(%s, %s, %s, %s, hero_chain_next(%s, %s, %s, %s))"
        plain_row = "(%s, %s, %s, %s, %s)" if chained else "(%s, %s, %s, %s)"
        ids: dict[tuple[UUID, int], int] = {}
        for start in range(0, len(stored_events), INSERT_CHUNK_SIZE):
            chunk = stored_events[start : start + INSERT_CHUNK_SIZE]
            params: list[Any] = []
            rows: list[str] = []
            for s in chunk:
                fields = [
                    self._db_uuid(s.originator_id),
                    s.originator_version,
                    s.topic,
                    s.state,
                ]
                params += fields
                if in_sql:
                    rows.append(first_row if start == 0 and not rows else next_row)
                    params += fields
                else:
                    rows.append(plain_row)
                    if chained:
                        previous = link(previous, s)
                        params.append(previous)
            cursor.execute(
                f"INSERT INTO {self.events_table} ({columns}) "
                f"VALUES {', '.join(rows)} "
                "RETURNING id, originator_id, originator_version",
                params,
            )
            # RETURNING promises no order: match ids to events by their key.
            for row_id, originator_id, version in cursor.fetchall():
                ids[(self._py_uuid(originator_id), version)] = row_id
        result = [
            ids[(self._py_uuid(s.originator_id), s.originator_version)]
            for s in stored_events
        ]
        if chained and result != sorted(result):  # pragma: no cover - never seen
            raise InternalError(
                "The database assigned positions out of insertion order"
            )
        return result

    def _insert_one_on_postgresql(
        self, cursor: CursorWrapper, event: StoredEvent
    ) -> int:
        """One event on PostgreSQL: the table lock, and an INSERT that computes
        the event's link from the last one in SQL (the bytes link() hashes), sent
        together in one round trip."""
        table = self.events_table
        uuid = self._db_uuid(event.originator_id)
        link_sql = (
            f"sha256(COALESCE((SELECT chain FROM {table} ORDER BY id DESC LIMIT 1), "
            "%s::bytea) || uuid_send(%s::uuid) || int8send(%s::bigint) "
            "|| int4send(octet_length(convert_to(%s::text, 'UTF8'))) "
            "|| convert_to(%s::text, 'UTF8') || %s::bytea)"
        )
        with pipelined(cursor):
            cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            cursor.execute(
                f"INSERT INTO {table} "
                "(originator_id, originator_version, topic, state, chain) "
                f"VALUES (%s, %s, %s, %s, {link_sql}) RETURNING id",
                [
                    uuid,
                    event.originator_version,
                    event.topic,
                    event.state,
                    GENESIS,
                    uuid,
                    event.originator_version,
                    event.topic,
                    event.topic,
                    event.state,
                ],
            )
            (row_id,) = cursor.fetchone()
        return int(row_id)

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        statement = (
            "SELECT originator_id, originator_version, topic, state "
            f"FROM {self.events_table} WHERE originator_id = %s"
        )
        params: list[Any] = [self._db_uuid(originator_id)]
        if gt is not None:
            statement += " AND originator_version > %s"
            params.append(gt)
        if lte is not None:
            statement += " AND originator_version <= %s"
            params.append(lte)
        statement += " ORDER BY originator_version " + ("DESC" if desc else "ASC")
        if limit is not None:
            statement += " LIMIT %s"
            params.append(limit)
        with self.datastore.cursor() as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
        return [
            StoredEvent(
                originator_id=self._py_uuid(row[0]),
                originator_version=row[1],
                topic=row[2],
                state=self._bytes(row[3]),
            )
            for row in rows
        ]


class DjangoApplicationRecorder(DjangoAggregateRecorder, ApplicationRecorder):
    """Records events in aggregate sequences and in one ordered notification log."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self.datastore.transaction() as cursor:
            return self._insert_events(cursor, stored_events, **kwargs)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        rows = self.select_rows(
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start
        )
        return [self._notification(row) for row in rows]

    def _notification(self, row: tuple[int, Any, int, str, Any]) -> Notification:
        return Notification(
            id=row[0],
            originator_id=self._py_uuid(row[1]),
            originator_version=row[2],
            topic=row[3],
            state=self._bytes(row[4]),
        )

    def select_rows(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[tuple[int, Any, int, str, Any]]:
        """What :meth:`select_notifications` selects, as the database's rows:
        (id, originator_id, originator_version, topic, state), the originator
        id and state in the driver's types. For readers that decode every event
        (``EventMapper.decode`` takes the columns as they are)."""
        conditions: list[str] = []
        params: list[Any] = []
        if start is not None:
            conditions.append("id >= %s" if inclusive_of_start else "id > %s")
            params.append(start)
        if stop is not None:
            conditions.append("id <= %s")
            params.append(stop)
        if topics:
            conditions.append(f"topic IN ({', '.join(['%s'] * len(topics))})")
            params.extend(topics)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        params.append(limit)
        with self.datastore.cursor() as cursor:
            cursor.execute(
                "SELECT id, originator_id, originator_version, topic, state "
                f"FROM {self.events_table}{where} ORDER BY id LIMIT %s",
                params,
            )
            return cursor.fetchall()  # type: ignore[no-any-return]

    def select_notifications_of(
        self, originator_ids: Sequence[UUID | str], *, stop: int | None = None
    ) -> list[Notification]:
        """The events of the given aggregates, in the order of the store
        (an indexed read per aggregate: the cost follows their own events)."""
        if not originator_ids:
            return []
        notifications: list[Notification] = []
        for start in range(0, len(originator_ids), INSERT_CHUNK_SIZE):
            chunk = originator_ids[start : start + INSERT_CHUNK_SIZE]
            params: list[Any] = [self._db_uuid(i) for i in chunk]
            until = ""
            if stop is not None:
                until = " AND id <= %s"
                params.append(stop)
            with self.datastore.cursor() as cursor:
                cursor.execute(
                    "SELECT id, originator_id, originator_version, topic, state "
                    f"FROM {self.events_table} "
                    f"WHERE originator_id IN ({', '.join(['%s'] * len(chunk))}){until}",
                    params,
                )
                rows = cursor.fetchall()
            notifications.extend(self._notification(row) for row in rows)
        notifications.sort(key=lambda n: n.id)
        return notifications

    def max_notification_id(self) -> int | None:
        with self.datastore.cursor() as cursor:
            cursor.execute(f"SELECT MAX(id) FROM {self.events_table}")
            (max_id,) = cursor.fetchone()
        return None if max_id is None else int(max_id)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return PollingSubscription(self, gt=gt, topics=topics)


class PollingSubscription(Subscription[DjangoApplicationRecorder]):
    """Iterates over the notification log, polling for new events when it is
    exhausted, until :meth:`stop` is called (from any thread).

    Polling suits both backends: inserts are committed in id order (see the module
    docstring), so reading past the last id seen never skips an event.
    """

    def __init__(
        self,
        recorder: DjangoApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
        *,
        batch_size: int = 500,
        poll_interval: float | None = None,
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._batch_size = batch_size
        self._poll_interval = (
            conf.HERO_SUBSCRIPTION_POLL_INTERVAL
            if poll_interval is None
            else poll_interval
        )
        self._buffer: deque[Notification] = deque()
        self._stopped = threading.Event()

    def stop(self) -> None:
        super().stop()
        self._stopped.set()

    def __next__(self) -> Notification:
        while not self._buffer and not self._has_been_stopped:
            batch = self._recorder.select_notifications(
                start=self._last_notification_id or 0,
                limit=self._batch_size,
                topics=self._topics,
                inclusive_of_start=False,
            )
            if batch:
                self._buffer.extend(batch)
                self._last_notification_id = batch[-1].id
            else:
                self._stopped.wait(self._poll_interval)
        if self._has_been_stopped:
            raise StopIteration
        return self._buffer.popleft()


class DjangoTrackingRecorder(DjangoRecorder, TrackingRecorder):
    """Records how far each follower of the store has got, one row per follower."""

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.datastore.transaction() as cursor:
            self._insert_tracking(cursor, tracking)

    def _insert_tracking(self, cursor: CursorWrapper, tracking: Tracking) -> None:
        # Moves the position forward only; a position at or behind the recorded
        # one updates nothing, returns no row, and is refused.
        cursor.execute(
            f"INSERT INTO {self.tracking_table} (application_name, notification_id) "
            "VALUES (%s, %s) ON CONFLICT (application_name) DO UPDATE "
            "SET notification_id = EXCLUDED.notification_id "
            f"WHERE {self.tracking_table}.notification_id < EXCLUDED.notification_id "
            "RETURNING notification_id",
            [tracking.application_name, tracking.notification_id],
        )
        if cursor.fetchone() is None:
            msg = (
                f"Tracking of {tracking.application_name!r} is already at or past "
                f"notification {tracking.notification_id}"
            )
            raise IntegrityError(msg)

    def max_tracking_id(self, application_name: str) -> int | None:
        with self.datastore.cursor() as cursor:
            cursor.execute(
                f"SELECT notification_id FROM {self.tracking_table} "
                "WHERE application_name = %s",
                [application_name],
            )
            row = cursor.fetchone()
        return None if row is None else int(row[0])


class DjangoProcessRecorder(
    DjangoTrackingRecorder, DjangoApplicationRecorder, ProcessRecorder
):
    """Records events and a tracking position in one transaction."""

    def _insert_events(
        self, cursor: CursorWrapper, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> list[int]:
        ids = super()._insert_events(cursor, stored_events, **kwargs)
        tracking: Tracking | None = kwargs.get("tracking")
        if tracking is not None:
            self._insert_tracking(cursor, tracking)
        return ids


class DjangoFactory(InfrastructureFactory[DjangoTrackingRecorder]):
    """Constructs hero's recorders on the database named by ``HERO_DATABASE``.

    The environment key ``DJANGO_DATABASE`` overrides that setting for one
    application. ``CREATE_TABLE`` is accepted and ignored: migrations own the schema.
    """

    DJANGO_DATABASE = "DJANGO_DATABASE"

    aggregate_recorder_class = DjangoAggregateRecorder
    application_recorder_class = DjangoApplicationRecorder
    tracking_recorder_class = DjangoTrackingRecorder
    process_recorder_class = DjangoProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        alias = self.env.get(self.DJANGO_DATABASE) or conf.HERO_DATABASE
        if alias not in settings.DATABASES:
            known = ", ".join(repr(a) for a in settings.DATABASES) or "none"
            msg = (
                f"hero's event store is set to use database {alias!r}, which is not "
                f"in settings.DATABASES (it has: {known}). Set HERO_DATABASE to one "
                "of those aliases."
            )
            raise InfrastructureFactoryError(msg)
        self.datastore = DjangoDatastore(alias)

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        from hero.models import StoredEvent as StoredEventModel
        from hero.models import StoredSnapshot

        models: dict[str, type[Model]] = {
            "events": StoredEventModel,
            "snapshots": StoredSnapshot,
        }
        if purpose not in models:
            msg = (
                f"hero's event store has no table for {purpose!r} records; "
                f"it stores {' and '.join(models)}."
            )
            raise InfrastructureFactoryError(msg)
        return self.aggregate_recorder_class(self.datastore, models[purpose])

    def application_recorder(self) -> ApplicationRecorder:
        cls = self._recorder_class(
            self.APPLICATION_RECORDER_TOPIC, self.application_recorder_class
        )
        return cls(self.datastore)

    def tracking_recorder(
        self, tracking_recorder_class: type[DjangoTrackingRecorder] | None = None
    ) -> DjangoTrackingRecorder:
        cls = tracking_recorder_class or self._recorder_class(
            self.TRACKING_RECORDER_TOPIC, self.tracking_recorder_class
        )
        return cls(self.datastore)

    def process_recorder(self) -> ProcessRecorder:
        cls = self._recorder_class(
            self.PROCESS_RECORDER_TOPIC, self.process_recorder_class
        )
        return cls(self.datastore)

    def _recorder_class(
        self, topic_key: str, default: type[_Recorder]
    ) -> type[_Recorder]:
        topic = self.env.get(topic_key)
        cls = resolve_topic(topic) if topic else default
        if not (isinstance(cls, type) and issubclass(cls, DjangoRecorder)):
            msg = f"{topic_key}={topic!r} is not a recorder class of hero.persistence"
            raise InfrastructureFactoryError(msg)
        # Only checked to be one of hero's recorders: that a topic names one of
        # the default's kind is the site's setting to get right.
        return cast("type[_Recorder]", cls)


Factory = DjangoFactory
