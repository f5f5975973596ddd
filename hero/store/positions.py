"""Followers' positions: how far each read model (or other follower) has applied
the store, one row per follower in ``hero_tracking``.

Everything that reads or writes a position goes through :class:`Positions`:

- A follower's row is keyed ``"<name>@<application>"`` and holds the position of
  the last event it applied, or :data:`CURRENT`.
- :data:`CURRENT` means "every event in the store": each inline writer of
  events applies its own events in its own transaction, so every committed
  event is applied with its commit, and a follower that was current stays
  current without a write (:meth:`Positions.stay_current`). On MariaDB, MySQL
  and SQLite writers take turns (:mod:`hero.store.ordering`); on PostgreSQL
  they overlap, and each still applies only its own events. Whoever writes
  events without applying them sets it back to a number first
  (:meth:`Positions.mark_behind`); every reader resolves it to the store's last
  position in the same statement (:meth:`Positions.value_sql`), so it never
  reads as more than was applied. Events a site's own eventsourcing application
  stores in the same table need nothing from hero's followers, so "current"
  stays true across them.
- While a follower is being rebuilt, a marker row ``"<name>@<application>#rebuild"``
  tells every other writer to leave it alone (:meth:`Positions.mark_rebuilding`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError

from hero.store.ordering import Followers
from hero.store.sql import insert_missing, upsert
from hero.store.transactions import DjangoDatastore

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

#: Name of the application whose events hero's read models follow.
UPSTREAM = "hero"

#: A follower's stored position when it has applied every event in the store.
#: Only a writer holding the store's ordering lock (an inline projection) sets it.
CURRENT = -1

_REBUILD_SUFFIX = "#rebuild"

#: The followers that writers of events keep current in their own transaction
#: (hero's inline read models, registered from outside by
#: :func:`keep_current`): a writer on PostgreSQL reads their positions with
#: the ordering lock, in the same round trip (:meth:`Positions.prefetch`).
_kept_current: list[str] = []

_PREFETCHED = "positions"


#: Whether this process's writers apply their events to the followers kept
#: current (registered with them by :func:`keep_current`).
_applies_inline: list[Callable[[], bool]] = []


def keep_current(
    names: Sequence[str], applies_inline: Callable[[], bool] | None = None
) -> None:
    """Register the followers that writers apply events to inline, and what
    says whether they do (a setting read on every write)."""
    for name in names:
        if name not in _kept_current:
            _kept_current.append(name)
    if applies_inline is not None:
        _applies_inline[:] = [applies_inline]


def followers(application_name: str = UPSTREAM) -> Followers:
    """The followers a writer of events must keep right on PostgreSQL
    (:func:`hero.store.ordering.hold_ordering_lock`)."""
    return Followers(
        keys=[tracking_key(n, application_name) for n in _kept_current],
        markers=[rebuild_key(n, application_name) for n in _kept_current],
        applies_inline=all(check() for check in _applies_inline),
    )


def tracking_key(name: str, application_name: str = UPSTREAM) -> str:
    """The row that holds follower ``name``'s position."""
    return f"{name}@{application_name}"


def rebuild_key(name: str, application_name: str = UPSTREAM) -> str:
    """The marker row that says follower ``name`` is being rebuilt."""
    return f"{name}@{application_name}{_REBUILD_SUFFIX}"


class Positions:
    """The followers' positions on one database."""

    def __init__(self, datastore: DjangoDatastore) -> None:
        # Lazy: the store is importable before Django has loaded the models.
        from hero.models import StoredEvent, TrackingPosition

        self.datastore = datastore
        quote = datastore.connection.ops.quote_name
        self.table = quote(TrackingPosition._meta.db_table)
        self.events_table = quote(StoredEvent._meta.db_table)

    def value_sql(self) -> str:
        """SQL for a row's position, :data:`CURRENT` read as the store's last.

        One statement reads the position and the store's last position, so both
        come from one snapshot: CURRENT never reads as more than applied.
        """
        return (
            f"CASE WHEN notification_id = {CURRENT} "
            f"THEN COALESCE((SELECT MAX(id) FROM {self.events_table}), 0) "
            "ELSE notification_id END"
        )

    def read(self, key: str) -> int | None:
        """The position stored under ``key``, :data:`CURRENT` resolved."""
        with self.datastore.cursor() as cursor:
            cursor.execute(
                f"SELECT {self.value_sql()} FROM {self.table} "
                "WHERE application_name = %s",
                [key],
            )
            row = cursor.fetchone()
        return None if row is None else int(row[0])

    def states(
        self,
        cursor: CursorWrapper,
        names: Sequence[str],
        application_name: str = UPSTREAM,
        *,
        current: int | None = None,
        lock: bool = True,
    ) -> dict[str, tuple[int | None, bool]]:
        """Each follower's position and whether it is being rebuilt, in one
        query (and on PostgreSQL, MariaDB and MySQL, unless ``lock`` is false,
        locked until the transaction ends: a follower's row missing then is
        made first).

        :data:`CURRENT` reads as ``current`` when given (the position before the
        events a writer has just recorded), else as the store's last position.
        """
        keys = {}
        for name in names:
            keys[tracking_key(name, application_name)] = (name, False)
            keys[rebuild_key(name, application_name)] = (name, True)
        for_update = {
            "postgresql": f" FOR UPDATE OF {self.table}",
            "mysql": " FOR UPDATE",
        }
        locking = for_update.get(self.datastore.vendor, "") if lock else ""
        value = "notification_id" if current is not None else self.value_sql()
        # Locked in one order by every transaction that locks several rows.
        select = (
            f"SELECT application_name, {value} FROM {self.table} "
            f"WHERE application_name IN ({', '.join(['%s'] * len(keys))})"
            f"{' ORDER BY application_name' if locking else ''}{locking}"
        )
        cursor.execute(select, list(keys))
        rows = cursor.fetchall()
        if locking:
            found = {row[0] for row in rows}
            missing = [
                k for k, (_, marker) in keys.items() if not marker and k not in found
            ]
            if missing:
                # A follower that never applied anything: its row is made (at
                # 0, which reads as a missing row does) and locked now, before
                # this transaction writes any read row, so that two writers
                # never meet first on the read rows and then on this one.
                insert = insert_missing(
                    self.datastore.vendor,
                    self.table,
                    ("application_name", "notification_id"),
                    ("application_name",),
                )
                for key in missing:
                    cursor.execute(insert, [key, 0])
                cursor.execute(select, list(keys))
                rows = cursor.fetchall()
        states: dict[str, tuple[int | None, bool]] = {
            name: (None, False) for name in names
        }
        for key, stored in rows:
            name, is_marker = keys[key]
            position, marked = states[name]
            if is_marker:
                states[name] = (position, True)
            else:
                number = int(stored)
                if number == CURRENT and current is not None:
                    number = current
                states[name] = (number, marked)
        return states

    def _keys_sql(self, keys: Sequence[str]) -> str:
        return (
            f"SELECT application_name, notification_id FROM {self.table} "
            f"WHERE application_name IN ({', '.join(['%s'] * len(keys))})"
        )

    @staticmethod
    def _kept_keys(application_name: str) -> list[str]:
        keys = [tracking_key(n, application_name) for n in _kept_current]
        return keys + [rebuild_key(n, application_name) for n in _kept_current]

    def prefetch(self, cursor: CursorWrapper, application_name: str = UPSTREAM) -> None:
        """In a transaction hero opened, queue reading the positions that
        :meth:`stay_current` will need for the followers registered with
        :func:`keep_current`, to travel with the statements being sent (under
        the ordering lock, which keeps a :data:`CURRENT` position as it is)."""
        scratch = self.datastore.scratch()
        if scratch is None or not _kept_current:
            return
        keys = self._kept_keys(application_name)
        reader = cursor.db.cursor()
        reader.execute(self._keys_sql(keys), keys)
        scratch[_PREFETCHED] = (frozenset(keys), reader)

    def read_with_insert(
        self, application_name: str = UPSTREAM
    ) -> tuple[str, list[str], Callable[[str | None], None]] | None:
        """SQLite, in a transaction hero opened: the same read as
        :meth:`prefetch`, as one more column for the ``RETURNING`` of the
        writer's insert of events (which holds the write lock when it reads),
        with its parameters and what to call with the value it returns; None
        when there is nothing to read ahead."""
        scratch = self.datastore.scratch()
        if scratch is None or not _kept_current:
            return None
        keys = self._kept_keys(application_name)
        column = (
            "(SELECT group_concat(application_name || ' ' || notification_id, "
            f"char(10)) FROM {self.table} "
            f"WHERE application_name IN ({', '.join(['%s'] * len(keys))}))"
        )

        def take(value: str | None) -> None:
            pairs = (line.rsplit(" ", 1) for line in (value or "").splitlines())
            scratch[_PREFETCHED] = (frozenset(keys), {k: int(v) for k, v in pairs})

        return column, keys, take

    def _prefetched(self, keys: Sequence[str]) -> dict[str, int] | None:
        """The positions read ahead in this transaction (taken once), if
        they cover ``keys``."""
        scratch = self.datastore.scratch()
        if scratch is None or _PREFETCHED not in scratch:
            return None
        read, reader = scratch.pop(_PREFETCHED)
        if isinstance(reader, dict):
            rows = list(reader.items())
        else:
            with reader:
                rows = reader.fetchall()
        if not read.issuperset(keys):
            return None
        return {key: int(value) for key, value in rows if key in keys}

    def stay_current(
        self,
        cursor: CursorWrapper,
        names: Sequence[str],
        before: int,
        application_name: str = UPSTREAM,
    ) -> bool:
        """For events a writer has just recorded after position ``before``: True
        if every follower had applied all events before them and none is being
        rebuilt, their positions then being (or set to) :data:`CURRENT`;
        otherwise change nothing and return False.

        A follower at :data:`CURRENT` stays there without a write: only writers
        of events change it from there, and they wait for this writer's ordering
        lock; so does a rebuild starting.
        """
        keys = [tracking_key(name, application_name) for name in names]
        markers = [rebuild_key(name, application_name) for name in names]
        found = self._prefetched([*keys, *markers])
        if found is None:
            cursor.execute(self._keys_sql([*keys, *markers]), [*keys, *markers])
            found = {key: int(value) for key, value in cursor.fetchall()}
        if set(found) != set(keys):
            return False  # a follower never written yet, or one being rebuilt
        values = set(found.values())
        if values == {CURRENT}:
            return True
        if values != {before}:
            return False
        # Every follower exactly at the position before: make them current,
        # unless one moved meanwhile (PostgreSQL: a worker holding its row; the
        # UPDATE waits).
        in_keys = ", ".join(["%s"] * len(keys))
        update = (
            f"UPDATE {self.table} SET notification_id = {CURRENT} "
            f"WHERE application_name IN ({in_keys}) AND notification_id = %s"
        )
        moved: int
        if self.datastore.vendor == "postgresql":
            # In a pipeline the row count is not known until the result is
            # read: the rows moved are read back instead.
            cursor.execute(f"{update} RETURNING 1", [*keys, before])
            moved = len(cursor.fetchall())
        else:
            cursor.execute(update, [*keys, before])
            moved = cursor.rowcount
        if moved and moved != len(keys):
            # Put back the ones just moved: none was CURRENT (only writers set
            # it, and they wait for this one).
            cursor.execute(
                f"UPDATE {self.table} SET notification_id = %s "
                f"WHERE application_name IN ({in_keys}) "
                f"AND notification_id = {CURRENT}",
                [before, *keys],
            )
        return moved == len(keys)

    def write(
        self, cursor: CursorWrapper, positions: Sequence[tuple[str, int]]
    ) -> None:
        """Store each (tracking key, position) given, whatever was there."""
        if not positions:
            return
        cursor.execute(
            upsert(
                self.datastore.vendor,
                self.table,
                ("application_name", "notification_id"),
                ("application_name",),
                replace=("notification_id",),
                rows=len(positions),
            ),
            [value for pair in positions for value in pair],
        )

    def advance(self, cursor: CursorWrapper, key: str, position: int) -> None:
        """Move the position under ``key`` forward to ``position``; a position at
        or behind the stored one is refused with ``IntegrityError``."""
        if self.datastore.vendor == "mysql":
            self._advance_on_mysql(cursor, key, position)
            return
        cursor.execute(
            f"INSERT INTO {self.table} (application_name, notification_id) "
            "VALUES (%s, %s) ON CONFLICT (application_name) DO UPDATE "
            "SET notification_id = EXCLUDED.notification_id "
            f"WHERE {self.table}.notification_id < EXCLUDED.notification_id "
            "RETURNING notification_id",
            [key, position],
        )
        if cursor.fetchone() is None:
            msg = f"Tracking of {key!r} is already at or past notification {position}"
            raise IntegrityError(msg)

    def _advance_on_mysql(self, cursor: CursorWrapper, key: str, position: int) -> None:
        # No RETURNING with ON DUPLICATE KEY UPDATE: lock the row and compare;
        # two first inserts at once meet the primary key, which refuses one.
        cursor.execute(
            f"SELECT notification_id FROM {self.table} "
            "WHERE application_name = %s FOR UPDATE",
            [key],
        )
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                f"INSERT INTO {self.table} (application_name, notification_id) "
                "VALUES (%s, %s)",
                [key, position],
            )
        elif int(row[0]) < position:
            cursor.execute(
                f"UPDATE {self.table} SET notification_id = %s "
                "WHERE application_name = %s",
                [position, key],
            )
        else:
            msg = f"Tracking of {key!r} is already at or past notification {position}"
            raise IntegrityError(msg)

    def mark_behind(
        self, names: Sequence[str], position: int, application_name: str = UPSTREAM
    ) -> None:
        """Say that the followers have applied events up to ``position`` only,
        where they were :data:`CURRENT`: called by a writer of events it does not
        apply (async mode), in its transaction, before it commits.

        Where the positions were read ahead in this transaction (under the
        ordering lock: :meth:`prefetch`, :meth:`read_with_insert`) and none
        was :data:`CURRENT`, nothing is sent: only writers holding the lock in
        a mode that waits for this one's set it."""
        if not names:
            return
        keys = [tracking_key(name, application_name) for name in names]
        found = self._prefetched(keys)
        if found is not None and CURRENT not in found.values():
            return
        with self.datastore.transaction() as cursor:
            cursor.execute(
                f"UPDATE {self.table} SET notification_id = %s "
                f"WHERE application_name IN ({', '.join(['%s'] * len(keys))}) "
                f"AND notification_id = {CURRENT}",
                [position, *keys],
            )

    def mark_rebuilding(
        self, cursor: CursorWrapper, name: str, application_name: str = UPSTREAM
    ) -> None:
        """Forget the follower's position (back to 0: its row stays, so that
        whoever locks it finds it) and mark it as being rebuilt."""
        self.write(cursor, [(tracking_key(name, application_name), 0)])
        cursor.execute(
            f"INSERT INTO {self.table} (application_name, notification_id) "
            "VALUES (%s, 0)",
            [rebuild_key(name, application_name)],
        )

    def unmark_rebuilding(
        self, cursor: CursorWrapper, name: str, application_name: str = UPSTREAM
    ) -> None:
        """Hand a rebuilt follower back to the other writers."""
        cursor.execute(
            f"DELETE FROM {self.table} WHERE application_name = %s",
            [rebuild_key(name, application_name)],
        )

    def report(self, last_position: int | None) -> FollowerReport:
        """Every follower's position (:data:`CURRENT` read as ``last_position``,
        which the caller read first) and those being rebuilt."""
        with self.datastore.cursor() as cursor:
            cursor.execute(
                f"SELECT application_name, notification_id FROM {self.table}"
            )
            rows = cursor.fetchall()
        report = FollowerReport()
        for key, position in rows:
            if key.endswith(_REBUILD_SUFFIX):
                report.rebuilding.append(key.removesuffix(_REBUILD_SUFFIX))
            elif position == CURRENT:
                report.tracking[key] = last_position or 0
            else:
                report.tracking[key] = int(position)
        report.rebuilding.sort()
        return report


@dataclass
class FollowerReport:
    """Where each follower is, for :func:`hero.store.status.store_status`."""

    tracking: dict[str, int] = field(default_factory=dict)
    rebuilding: list[str] = field(default_factory=list)
