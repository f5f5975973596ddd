"""eventsourcing's recorders on Django's database, and a subscription to the log.

Select them the library's way, with ``PERSISTENCE_MODULE="hero.store"`` in an
application's environment (:mod:`hero.store.factory`). The tables are declared
as Django models in :mod:`hero.models` and created by migrations, never by the
recorders. Every write goes through :class:`~hero.store.transactions.DjangoDatastore`,
so it joins the caller's transaction.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.db import utils as db_utils
from django.db.backends.utils import CursorWrapper
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InternalError,
    Notification,
    ProcessRecorder,
    Recorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)

from hero.conf import conf
from hero.store.chain import (
    LINKED_ON_THE_WAY,
    SQLITE_NEXT_ROW_SQL,
    Unlinked,
    chain_keys,
    keep_linkers_away,
    link_after_commit,
    link_updates,
    links,
    register_sqlite_functions,
    seal,
    sqlite_first_row_sql,
)
from hero.store.ordering import (
    below_horizon,
    hold_ordering_lock,
    positions_past,
    reserve_positions,
)
from hero.store.positions import Positions, followers
from hero.store.postgres import Listener, announce, pipelined
from hero.store.transactions import DjangoDatastore, VersionConflict

if TYPE_CHECKING:
    from django.db.models import Model

#: Rows per INSERT statement; keeps parameters well under every backend's limit.
INSERT_CHUNK_SIZE = 500

#: An aggregate's stored events, and the data key the latest of them holding
#: one holds: (the version of the event holding it, the key wrapped), or None.
EventsAndKey = tuple[list[StoredEvent], tuple[int, bytes] | None]


class DjangoRecorder(Recorder):
    """Base of hero's recorders: SQL on the tables declared in :mod:`hero.models`."""

    def __init__(
        self, datastore: DjangoDatastore, events_model: type[Model] | None = None
    ) -> None:
        # Lazy: the store is importable before Django has loaded the models.
        from hero.models import StoredEvent as StoredEventModel

        self.datastore = datastore
        self.events_model = events_model or StoredEventModel
        # Inserts into the notification log are ordered (hero.store.ordering);
        # snapshots have no notification ids to keep in order.
        self.serialise_inserts = self.events_model is StoredEventModel
        connection = datastore.connection
        self.events_table = connection.ops.quote_name(self.events_model._meta.db_table)
        # MySQL cannot return the rows an INSERT made (MariaDB 10.5+ can).
        self.returns_rows: bool = connection.features.can_return_rows_from_bulk_insert

    def create_table(self) -> None:
        """Do nothing: hero's tables are created by Django migrations."""

    def _db_uuid(self, value: UUID | str) -> UUID | str:
        uuid = value if isinstance(value, UUID) else UUID(str(value))
        return uuid if self.datastore.native_uuid else uuid.hex

    @staticmethod
    def _py_uuid(value: UUID | str) -> UUID:
        return value if isinstance(value, UUID) else UUID(value)

    @staticmethod
    def _data_key(
        data_keys: Mapping[tuple[UUID, int], bytes], stored: StoredEvent
    ) -> bytes | None:
        """The wrapped data key to store with an event, if it holds one."""
        if not data_keys:
            return None
        originator = DjangoRecorder._py_uuid(stored.originator_id)
        return data_keys.get((originator, stored.originator_version))

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
        self,
        cursor: CursorWrapper,
        stored_events: Sequence[StoredEvent],
        *,
        data_keys: Mapping[tuple[UUID, int], bytes] | None = None,
        **_: Any,
    ) -> list[int]:
        """Insert in multi-row statements; return the new rows' ids in order.

        ``data_keys``: wrapped data keys (:mod:`hero.sealing`) to store with
        the events, by (aggregate id, version)."""
        try:
            return self._insert_rows(cursor, stored_events, data_keys or {})
        except db_utils.IntegrityError as error:
            # The only constraint an event can break: its version is taken.
            raise VersionConflict(
                f"Database {self.datastore.alias!r}: {error}"
            ) from error

    def _insert_rows(
        self,
        cursor: CursorWrapper,
        stored_events: Sequence[StoredEvent],
        data_keys: Mapping[tuple[UUID, int], bytes],
    ) -> list[int]:
        if not stored_events:
            return []
        # The notification log is chained (hero.store.chain) and ordered
        # (hero.store.ordering): on SQLite the INSERT itself computes the
        # links, on MariaDB and MySQL the last link is read under the ordering
        # lock, and on PostgreSQL each event is sealed and linked after the
        # commit. Either way they are computed in this process, with a key the
        # database never sees.
        chained = self.serialise_inserts
        in_sql = chained and self.datastore.vendor == "sqlite"
        chain: list[bytes] = []
        if in_sql:
            register_sqlite_functions(cursor.db)
        elif chained and self.datastore.vendor == "postgresql":
            return self._insert_sealed(cursor, stored_events, data_keys)
        elif chained:
            with pipelined(cursor):
                hold_ordering_lock(cursor)
            cursor.execute(
                f"SELECT chain FROM {self.events_table} ORDER BY id DESC LIMIT 1"
            )
            row = cursor.fetchone()
            previous = self._bytes(row[0]) if row and row[0] is not None else None
            chain = links(previous, stored_events)
        columns = "originator_id, originator_version, topic, state"
        if chained:  # the store's events (not snapshots)
            columns += ", chain, data_key"
        # On SQLite the statement also reads what the inline projections
        # will ask of the followers' positions (one statement fewer).
        read_ahead = (
            Positions(self.datastore).read_with_insert()
            if in_sql and self.returns_rows
            else None
        )
        returning = "RETURNING id, originator_id, originator_version"
        if read_ahead is not None:
            returning += f", {read_ahead[0]}"
        # On SQLite: the values up to the link, then the data key's.
        first_row = f"({sqlite_first_row_sql(self.events_table)}, %s)"
        next_row = f"({SQLITE_NEXT_ROW_SQL}, %s)"
        plain_row = "(%s, %s, %s, %s, %s, %s)" if chained else "(%s, %s, %s, %s)"
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
                        params.append(chain[start + len(rows) - 1])
                if chained:
                    params.append(self._data_key(data_keys, s))
            insert = (
                f"INSERT INTO {self.events_table} ({columns}) VALUES {', '.join(rows)}"
            )
            if not self.returns_rows:
                ids.update(
                    self._insert_without_returning(cursor, insert, params, chunk)
                )
                continue
            if read_ahead is not None:
                params += read_ahead[1]
            cursor.execute(f"{insert} {returning}", params)
            returned = cursor.fetchall()
            # RETURNING promises no order: match ids to events by their key.
            for row_id, originator_id, version, *_ in returned:
                ids[(self._py_uuid(originator_id), version)] = row_id
            if read_ahead is not None and returned:
                read_ahead[2](returned[-1][3])
        result = [
            ids[(self._py_uuid(s.originator_id), s.originator_version)]
            for s in stored_events
        ]
        if chained and result != sorted(result):  # pragma: no cover - never seen
            raise InternalError(
                "The database assigned positions out of insertion order"
            )
        return result

    def reserve_ahead(self, count: int) -> None:
        """PostgreSQL, in a transaction hero opened
        (:meth:`~hero.store.transactions.DjangoDatastore.owned_transaction`):
        queue what :meth:`_insert_sealed` sends before its writes (the store
        shared with other writers, ``count`` positions reserved, the
        followers' positions read), so that it travels with the reads of the
        decision made before them, in their round trip. Positions not taken
        are left as gaps, as a rolled-back writer leaves them."""
        scratch = self.datastore.scratch()
        if scratch is None or self.datastore.vendor != "postgresql" or count < 1:
            return
        with self.datastore.transaction() as cursor:
            scratch[_RESERVED] = _Reservation(self, cursor, count)

    def _insert_sealed(
        self,
        cursor: CursorWrapper,
        stored_events: Sequence[StoredEvent],
        data_keys: Mapping[tuple[UUID, int], bytes],
    ) -> list[int]:
        """PostgreSQL: reserve the events' positions and insert them sealed,
        to be linked after the commit; writers do not wait for one another.

        Sharing the table with other writers, reserving the positions and
        (with the followers' positions the inline projections will need)
        reading them take one round trip, or travel with the decision's reads
        when reserved ahead (:meth:`reserve_ahead`). Linking is asked for the
        moment the transaction commits (:meth:`DjangoDatastore.after_commit`),
        unless ``hero_project`` links (:attr:`~hero.conf.Settings.workers_link`).
        """
        scratch = self.datastore.scratch() or {}
        reservation: _Reservation | None = scratch.pop(_RESERVED, None)
        if reservation is None:
            reservation = _Reservation(self, cursor, len(stored_events))
        reserved, earlier = reservation.take(
            cursor, len(stored_events), after=scratch.get(_READ_UP_TO, 0)
        )
        key = chain_keys()[0].secret
        seals = [
            seal(position, event, key)
            for position, event in zip(reserved, stored_events, strict=True)
        ]
        link_updates(cursor, self.events_table, earlier)
        self._insert_at(cursor, stored_events, seals, reserved, data_keys)
        if not reservation.own and not conf.workers_link:
            self.datastore.after_commit(link_after_commit)
        return reserved

    def _insert_at(
        self,
        cursor: CursorWrapper,
        stored_events: Sequence[StoredEvent],
        seals: list[bytes],
        positions: list[int],
        data_keys: Mapping[tuple[UUID, int], bytes],
    ) -> None:
        """PostgreSQL: insert the sealed events at the positions reserved for
        them, reading nothing back. In a transaction of hero's own the
        statements wait in its pipeline and go to the server with the
        projections' writes and the commit
        (:func:`~hero.store.postgres.pipelined_transaction`)."""
        for start in range(0, len(stored_events), INSERT_CHUNK_SIZE):
            chunk = stored_events[start : start + INSERT_CHUNK_SIZE]
            params: list[Any] = []
            for offset, s in enumerate(chunk, start):
                params += [
                    positions[offset],
                    self._db_uuid(s.originator_id),
                    s.originator_version,
                    s.topic,
                    s.state,
                    seals[offset],
                    self._data_key(data_keys, s),
                ]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {self.events_table} "
                "(id, originator_id, originator_version, topic, state, seal, "
                "data_key) "
                f"VALUES {values}",
                params,
            )

    def _insert_without_returning(
        self,
        cursor: CursorWrapper,
        insert: str,
        params: list[Any],
        chunk: Sequence[StoredEvent],
    ) -> dict[tuple[UUID, int], int]:
        """MySQL, which has no RETURNING: the ids of one multi-row INSERT are
        consecutive from LAST_INSERT_ID(), since the ordering lock lets no other
        insert into the table run meanwhile."""
        if not self.serialise_inserts:
            # Snapshots: their ids are consecutive only with no insert between.
            hold_ordering_lock(cursor)
        cursor.execute(insert, params)
        cursor.execute("SELECT LAST_INSERT_ID()")
        (first,) = cursor.fetchone()
        return {
            (self._py_uuid(s.originator_id), s.originator_version): int(first) + n
            for n, s in enumerate(chunk)
        }

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
        return self._stored_events(rows)

    def _stored_events(self, rows: Sequence[Sequence[Any]]) -> list[StoredEvent]:
        """Stored events of rows that begin with (aggregate, version, topic,
        state)."""
        return [
            StoredEvent(
                originator_id=self._py_uuid(row[0]),
                originator_version=row[1],
                topic=row[2],
                state=self._bytes(row[3]),
            )
            for row in rows
        ]

    def select_events_and_key(self, originator_id: UUID | str) -> EventsAndKey:
        """An aggregate's events, and the data key (:mod:`hero.sealing`) that
        the latest of them holding one holds, in one statement: (the version of
        the event holding it, the key wrapped), or None."""
        with self.datastore.cursor() as cursor:
            cursor.execute(
                "SELECT originator_id, originator_version, topic, state, data_key, "
                f"id FROM {self.events_table} WHERE originator_id = %s "
                "ORDER BY originator_version",
                [self._db_uuid(originator_id)],
            )
            rows = cursor.fetchall()
        self._note_read(rows)
        return self._events_and_key(rows)

    def select_events_and_keys(
        self, originator_ids: Sequence[UUID]
    ) -> dict[UUID, EventsAndKey]:
        """:meth:`select_events_and_key` of several aggregates, in one
        statement (for a few; a chunk a statement for many)."""
        found: dict[UUID, list[Any]] = {i: [] for i in originator_ids}
        with self.datastore.cursor() as cursor:
            rows = _in_chunks(
                cursor,
                "SELECT originator_id, originator_version, topic, state, data_key, "
                f"id FROM {self.events_table} WHERE originator_id IN ({{ids}}) "
                "ORDER BY originator_id, originator_version",
                [self._db_uuid(i) for i in found],
            )
        self._note_read(rows)
        for row in rows:
            found[self._py_uuid(row[0])].append(row)
        return {i: self._events_and_key(rows) for i, rows in found.items()}

    def _note_read(self, rows: Sequence[Sequence[Any]]) -> None:
        """In a transaction hero opened that reserved positions ahead of its
        read (:meth:`reserve_ahead`), keep the highest position among ``rows``
        (position last) that its decision read: the positions it writes at
        must come after it. Positions reserved after the read are past it."""
        scratch = self.datastore.scratch()
        if scratch is not None and rows and _RESERVED in scratch:
            highest = max(int(row[-1]) for row in rows)
            scratch[_READ_UP_TO] = max(highest, scratch.get(_READ_UP_TO, 0))

    def _events_and_key(self, rows: Sequence[Sequence[Any]]) -> EventsAndKey:
        """One aggregate's rows (aggregate, version, topic, state, data key), in
        order, as its stored events and the data key the latest of them
        holding one holds."""
        key = next(
            ((row[1], self._bytes(row[4])) for row in reversed(rows) if row[4]),
            None,
        )
        return self._stored_events(rows), key

    def select_data_keys(
        self, originator_ids: Iterable[UUID]
    ) -> list[tuple[UUID, int, bytes]]:
        """(aggregate, version, wrapped key) of each event of these aggregates
        that holds a data key (:mod:`hero.sealing`)."""
        wanted = [self._db_uuid(i) for i in sorted(set(originator_ids))]
        with self.datastore.cursor() as cursor:
            rows = _in_chunks(
                cursor,
                "SELECT originator_id, originator_version, data_key "
                f"FROM {self.events_table} WHERE data_key IS NOT NULL "
                "AND originator_id IN ({ids})",
                wanted,
            )
        found = [
            (self._py_uuid(aggregate), version, self._bytes(key))
            for aggregate, version, key in rows
        ]
        return found

    def select_data_key_at(
        self, position: int, version: int
    ) -> tuple[UUID, bytes] | None:
        """(aggregate, wrapped key) held by the event at ``version`` of the
        aggregate of the event at ``position``, if it holds one."""
        with self.datastore.cursor() as cursor:
            cursor.execute(
                "SELECT k.originator_id, k.data_key "
                f"FROM {self.events_table} e JOIN {self.events_table} k "
                "ON k.originator_id = e.originator_id AND k.originator_version = %s "
                "WHERE e.id = %s",
                [version, position],
            )
            row = cursor.fetchone()
        if row is None or row[1] is None:
            return None
        return self._py_uuid(row[0]), self._bytes(row[1])

    def select_data_keys_after(
        self, position: int, limit: int
    ) -> list[tuple[int, UUID, int, bytes]]:
        """(position, aggregate, version, wrapped key) of the next ``limit``
        events after ``position`` that hold a data key, in store order."""
        with self.datastore.cursor() as cursor:
            cursor.execute(
                "SELECT id, originator_id, originator_version, data_key "
                f"FROM {self.events_table} WHERE data_key IS NOT NULL AND id > %s "
                "ORDER BY id LIMIT %s",
                [position, limit],
            )
            rows = cursor.fetchall()
        return [
            (row_id, self._py_uuid(aggregate), version, self._bytes(key))
            for row_id, aggregate, version, key in rows
        ]

    def replace_data_keys(self, keys: Sequence[tuple[bytes, int]]) -> None:
        """Store (wrapped key, position) pairs: each event's key wrapped again."""
        if keys:
            with self.datastore.transaction() as cursor:
                cursor.executemany(
                    f"UPDATE {self.events_table} SET data_key = %s WHERE id = %s", keys
                )

    def empty_data_keys(self, originator_ids: Sequence[UUID]) -> None:
        """Set to NULL the data keys held by these aggregates' events, their
        user being forgotten, in the caller's transaction if there is one
        (linkers are kept away until it ends: see
        :func:`~hero.store.chain.keep_linkers_away`)."""
        with self.datastore.transaction() as cursor:
            keep_linkers_away(cursor)  # the events' rows are locked to the end
            for start in range(0, len(originator_ids), INSERT_CHUNK_SIZE):
                chunk = originator_ids[start : start + INSERT_CHUNK_SIZE]
                cursor.execute(
                    f"UPDATE {self.events_table} SET data_key = NULL "
                    "WHERE data_key IS NOT NULL AND originator_id IN "
                    f"({', '.join(['%s'] * len(chunk))})",
                    [self._db_uuid(i) for i in chunk],
                )


def _in_chunks(
    cursor: CursorWrapper, statement: str, ids: Sequence[Any], *more: Any
) -> list[Any]:
    """The rows of ``statement`` for ``ids``, a chunk of them a statement:
    its ``{ids}`` stands for the chunk's placeholders, and ``more`` are the
    parameters after them."""
    rows: list[Any] = []
    for start in range(0, len(ids), INSERT_CHUNK_SIZE):
        chunk = ids[start : start + INSERT_CHUNK_SIZE]
        cursor.execute(
            statement.format(ids=", ".join(["%s"] * len(chunk))), [*chunk, *more]
        )
        rows += cursor.fetchall()
    return rows


#: The scratch key of the positions reserved ahead
#: (:meth:`DjangoAggregateRecorder.reserve_ahead`).
_RESERVED = "reserved"
#: The scratch key of the highest position the transaction's decision read.
_READ_UP_TO = "read_up_to"


class _Reservation:
    """PostgreSQL: the statements a writer of events sends before its writes,
    queued in its transaction's pipeline: the store shared with other writers
    (:func:`~hero.store.ordering.hold_ordering_lock`), an announcement, positions
    reserved, the followers' positions read ahead and, in a transaction of
    hero's own, the committed events to link on the way (unless
    ``hero_project`` links: :attr:`~hero.conf.Settings.workers_link`)."""

    __slots__ = ("own", "positions", "unlinked")

    def __init__(
        self, recorder: DjangoAggregateRecorder, cursor: Any, count: int
    ) -> None:
        # In a transaction of hero's own (short), the events committed before
        # these are linked on the way; otherwise right after the commit; with
        # async projections, by the worker.
        self.own = recorder.datastore.owns_transaction()
        with pipelined(cursor):
            hold_ordering_lock(cursor, appending=followers())
            if conf.announces:
                announce(cursor)
            self.positions = reserve_positions(cursor, count)
            Positions(recorder.datastore).prefetch(cursor)
            self.unlinked = (
                Unlinked(cursor, wait=False, own_marks=True, limit=LINKED_ON_THE_WAY)
                if self.own and not conf.workers_link
                else None
            )

    def take(
        self, cursor: Any, count: int, *, after: int = 0
    ) -> tuple[list[int], list[tuple[bytes, int]]]:
        """The positions of ``count`` events, all past ``after`` (the highest
        position the decision read: :func:`~hero.store.ordering.positions_past`),
        and the links of the events to link on the way."""
        with self.positions:
            reserved = [int(position) for (position,) in self.positions.fetchall()]
        earlier = self.unlinked.links() if self.unlinked is not None else []
        return positions_past(cursor, reserved, count, after), earlier


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
        params.append(limit)
        with self.datastore.cursor() as cursor, self._bounded(cursor) as bound:
            if bound:
                conditions.append(bound)
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            cursor.execute(
                "SELECT id, originator_id, originator_version, topic, state "
                f"FROM {self.events_table}{where} ORDER BY id LIMIT %s",
                params,
            )
            return cursor.fetchall()  # type: ignore[no-any-return]

    @contextmanager
    def _bounded(self, cursor: CursorWrapper) -> Iterator[str]:
        """The condition that keeps a read of the log at or below positions
        that can no longer be filled in (PostgreSQL: the horizon, read in the
        same round trip), or "" where inserts are never concurrent."""
        if self.datastore.vendor != "postgresql":
            yield ""
            return
        with pipelined(cursor), below_horizon(cursor) as bound:
            yield bound

    def select_notifications_of(
        self, originator_ids: Sequence[UUID | str], *, stop: int | None = None
    ) -> list[Notification]:
        """The events of the given aggregates, in the order of the store
        (an indexed read per aggregate: the cost follows their own events)."""
        rows = self.select_rows_of(originator_ids, stop=stop)
        return [self._notification(row) for row in rows]

    def select_rows_of(
        self, originator_ids: Sequence[UUID | str], *, stop: int | None = None
    ) -> list[tuple[int, Any, int, str, Any]]:
        """:meth:`select_notifications_of` as the database's rows, in the form
        of :meth:`select_rows`."""
        until = "" if stop is None else " AND id <= %s"
        with self.datastore.cursor() as cursor:
            rows: list[tuple[int, Any, int, str, Any]] = _in_chunks(
                cursor,
                "SELECT id, originator_id, originator_version, topic, state "
                f"FROM {self.events_table} WHERE originator_id IN ({{ids}}){until}",
                [self._db_uuid(i) for i in originator_ids],
                *([] if stop is None else [stop]),
            )
        rows.sort(key=lambda row: row[0])
        return rows

    def max_notification_id(self) -> int | None:
        with self.datastore.cursor() as cursor, self._bounded(cursor) as bound:
            where = f" WHERE {bound}" if bound else ""
            cursor.execute(f"SELECT MAX(id) FROM {self.events_table}{where}")
            (max_id,) = cursor.fetchone()
        return None if max_id is None else int(max_id)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return PollingSubscription(self, gt=gt, topics=topics)


#: Longest a listening subscription waits before it looks whether it was stopped.
_STOP_CHECK_INTERVAL = 0.25


class PollingSubscription(Subscription[DjangoApplicationRecorder]):
    """Iterates over the notification log, polling for new events when it is
    exhausted, until :meth:`stop` is called (from any thread).

    Inserts are committed in id order (:mod:`hero.store.ordering`), so reading
    past the last id seen never skips an event. On PostgreSQL it also listens
    for the writers' announcements (:class:`~hero.store.postgres.Listener`) and
    reads as soon as events are committed; the poll interval stays as the
    fallback, and is the only wake-up elsewhere.
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
        # On PostgreSQL, listening before the first read: no announcement is
        # missed, and polling stays as the fallback (as on the other backends).
        self._listener = None
        if recorder.datastore.vendor == "postgresql":
            self._listener = Listener(recorder.datastore.connection)

    def stop(self) -> None:
        super().stop()
        self._stopped.set()

    def _wait(self) -> None:
        """Until events are announced (PostgreSQL), the poll interval passes or
        the subscription is stopped, whichever comes first."""
        if self._listener is None:
            self._stopped.wait(self._poll_interval)
            return
        # In short waits, so that stop() from another thread is seen soon.
        deadline = time.monotonic() + self._poll_interval
        while not self._stopped.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._listener.wait(min(left, _STOP_CHECK_INTERVAL)):
                return

    def ready(self) -> int:
        """How many notifications :meth:`__next__` returns without reading or
        waiting (those read already)."""
        return len(self._buffer)

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
                self._wait()
        if self._has_been_stopped:
            if self._listener is not None:
                self._listener.close()  # in the thread that uses it
                self._listener = None
            raise StopIteration
        return self._buffer.popleft()


class DjangoTrackingRecorder(DjangoRecorder, TrackingRecorder):
    """Records how far each follower of the store has got, one row per follower
    (:mod:`hero.store.positions`)."""

    def __init__(
        self, datastore: DjangoDatastore, events_model: type[Model] | None = None
    ) -> None:
        super().__init__(datastore, events_model)
        self.positions = Positions(datastore)

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.datastore.transaction() as cursor:
            self._insert_tracking(cursor, tracking)

    def _insert_tracking(self, cursor: CursorWrapper, tracking: Tracking) -> None:
        self.positions.advance(
            cursor, tracking.application_name, tracking.notification_id
        )

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.positions.read(application_name)


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
