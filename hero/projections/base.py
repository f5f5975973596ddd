"""Views: read tables kept by events, each with its own tracking position.

A view applies a batch of events in one transaction: its rows and its position
in the store are written together, so a view is never half-updated and never
applies an event twice (events at or before its position are skipped). Events
a view does not use still move its position forward.

A view that finds a gap between its position and the first event it is given
(events recorded while projections were off, or while another mode ran) first
reads and applies the missing events, in the same transaction.

While ``hero_rebuild`` runs, a marker row tells every other writer (inline
projections, ``hero_project``) to leave the view alone; the rebuild applies
their events before it removes the marker.

Inline, a view's position is kept as :data:`CURRENT` ("every event in the
store") rather than moved by every write: the writer of events holds the
store's write lock, so the events before its own are all there, and all
applied. Whoever writes events without applying them sets the position back to
a number first (:func:`mark_behind`); readers resolve :data:`CURRENT` to the
store's last position. (Events a site's own eventsourcing application stores in
the same table need nothing from the views, so "current" stays true across them.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple
from uuid import UUID

from django.conf import settings
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from hero.persistence import DjangoTrackingRecorder, pipelined
from hero.users import existing_user_pks

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

#: Name of the application whose events the views follow.
UPSTREAM = "hero"

#: A view's stored position when it has applied every event in the store. Only
#: a writer holding the store's write lock (an inline projection) sets it.
CURRENT = -1


class Change(NamedTuple):
    """A domain event at its position in the store."""

    position: int
    event: DomainEventProtocol[UUID]


def read_changes(after: int, limit: int, until: int | None = None) -> list[Change]:
    """Up to ``limit`` of the store's events after position ``after`` (and not
    after ``until``), in order."""
    from hero.ledger import get_ledger

    ledger = get_ledger()
    rows = ledger.recorder.select_rows(
        start=after, limit=limit, stop=until, inclusive_of_start=False
    )
    return [Change(*pair) for pair in ledger.decode_rows(rows)]


class View(DjangoTrackingRecorder):
    """Read tables and their tracking position; subclasses write the rows."""

    #: The projection's name, used in its tracking key and on the command line.
    name: ClassVar[str]
    #: Tables a rebuild empties (the view's own; listed child tables first).
    tables: ClassVar[Sequence[str]] = ()
    #: Whether rows of users deleted since must be left out (tables with a
    #: foreign key to the user model).
    checks_users: ClassVar[bool] = True

    def tracking_key(self, application_name: str) -> str:
        return f"{self.name}@{application_name}"

    def rebuild_key(self, application_name: str = UPSTREAM) -> str:
        return f"{self.name}@{application_name}#rebuild"

    # The tracking recorder's interface, on this view's own keys -------------

    def max_tracking_id(self, application_name: str) -> int | None:
        """The view's position, :data:`CURRENT` read as the store's last."""
        with self.datastore.cursor() as cursor:
            cursor.execute(
                f"SELECT {self._position_sql()} FROM {self.tracking_table} "
                "WHERE application_name = %s",
                [self.tracking_key(application_name)],
            )
            row = cursor.fetchone()
        return None if row is None else int(row[0])

    def _position_sql(self) -> str:
        # One statement reads the position and the store's last position, so
        # both come from one snapshot: CURRENT never reads as more than applied.
        return (
            f"CASE WHEN notification_id = {CURRENT} "
            f"THEN COALESCE((SELECT MAX(id) FROM {self.events_table}), 0) "
            "ELSE notification_id END"
        )

    def _insert_tracking(self, cursor: CursorWrapper, tracking: Tracking) -> None:
        key = self.tracking_key(tracking.application_name)
        super()._insert_tracking(cursor, Tracking(key, tracking.notification_id))

    # Applying events ---------------------------------------------------------

    def apply(
        self,
        changes: Sequence[Change],
        application_name: str = UPSTREAM,
        *,
        rebuilding: bool = False,
        users_exist: bool = False,
    ) -> int:
        """Apply the changes not yet applied; return how many were new."""
        return apply_views(
            [self],
            changes,
            application_name,
            rebuilding=rebuilding,
            users_exist=users_exist,
        )

    def write(
        self, cursor: CursorWrapper, changes: Sequence[Change], users: set[str] | None
    ) -> None:
        """Write the rows for ``changes``; ``users`` (if not None) is the set of
        user pks that still exist."""
        raise NotImplementedError

    def _missed(self, after: int, before: int) -> list[Change]:
        return read_changes(after, before - after, until=before - 1)

    def _write(
        self, cursor: CursorWrapper, changes: Sequence[Change], users_exist: bool
    ) -> None:
        """Write ``changes``, leaving out users deleted since unless the caller
        knows they all exist (or the view does not refer to users)."""
        users = None
        if self.checks_users and not users_exist:
            pks = {getattr(c.event, "user_pk", None) for c in changes} - {None}
            users = existing_user_pks(self.datastore.alias, pks)  # type: ignore[arg-type]
        self.write(cursor, changes, users)

    # Rebuilding --------------------------------------------------------------

    def start_rebuild(self, application_name: str = UPSTREAM) -> bool:
        """Empty the view and mark it as being rebuilt; False if a rebuild was
        already under way (it is resumed, not restarted)."""
        with self.datastore.transaction() as cursor:
            if self.datastore.vendor == "postgresql":
                # Held off until now, an inline writer sees the marker.
                cursor.execute(f"LOCK TABLE {self.events_table} IN EXCLUSIVE MODE")
            _, marked = _states(cursor, [self], application_name)[self.name]
            if marked:
                return False
            qn = self.datastore.connection.ops.quote_name
            for table in self.tables:
                cursor.execute(f"DELETE FROM {qn(table)}")
            cursor.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name = %s",
                [self.tracking_key(application_name)],
            )
            cursor.execute(
                f"INSERT INTO {self.tracking_table} (application_name, notification_id) "
                "VALUES (%s, 0)",
                [self.rebuild_key(application_name)],
            )
        return True

    def finish_rebuild(
        self, cursor: CursorWrapper, application_name: str = UPSTREAM
    ) -> None:
        cursor.execute(
            f"DELETE FROM {self.tracking_table} WHERE application_name = %s",
            [self.rebuild_key(application_name)],
        )

    def is_rebuilding(self, application_name: str = UPSTREAM) -> bool:
        with self.datastore.cursor() as cursor:
            return _states(cursor, [self], application_name)[self.name][1]


def apply_views(
    views: Sequence[View],
    changes: Sequence[Change],
    application_name: str = UPSTREAM,
    *,
    rebuilding: bool = False,
    users_exist: bool = False,
    recorded: bool = False,
) -> int:
    """Apply ``changes`` to each view (on one database) in one transaction:
    one read of their positions, their rows, one write of their positions.

    ``users_exist`` says the caller knows every user in ``changes`` exists
    (inline, where the user was just given); otherwise rows of users deleted
    since are left out of views that refer to users. ``recorded`` says that
    ``changes`` are the events this transaction has just recorded, so the last
    in the store, written under its write lock (inline). Returns the largest
    number of changes new to a view.
    """
    if not changes or not views:
        return 0
    datastore = views[0].datastore
    applied = 0
    with datastore.transaction() as cursor:
        if recorded and _stay_current(cursor, views, changes, application_name):
            # The common case: every view had applied all events before these.
            with pipelined(cursor):
                for view in views:
                    view._write(cursor, changes, users_exist)
            return len(changes)
        before = changes[0].position - 1 if recorded else None
        states = _states(cursor, views, application_name, current=before)
        positions: list[tuple[str, int]] = []
        for view in views:
            position, marked = states[view.name]
            if marked and not rebuilding:
                continue  # the rebuild will apply these
            fresh = [c for c in changes if position is None or c.position > position]
            if not fresh:
                continue
            if not rebuilding and fresh[0].position > (position or 0) + 1:
                fresh = [*view._missed(position or 0, fresh[0].position), *fresh]
            view._write(cursor, fresh, users_exist)
            # A writer of the store's last events leaves the view current.
            reached = CURRENT if recorded else fresh[-1].position
            positions.append((view.tracking_key(application_name), reached))
            applied = max(applied, len(fresh))
        if positions:
            cursor.execute(
                f"INSERT INTO {views[0].tracking_table} (application_name, notification_id) "
                f"VALUES {', '.join(['(%s, %s)'] * len(positions))} "
                "ON CONFLICT (application_name) DO UPDATE "
                "SET notification_id = EXCLUDED.notification_id",
                [value for pair in positions for value in pair],
            )
    return applied


def _states(
    cursor: CursorWrapper,
    views: Sequence[View],
    application_name: str,
    *,
    current: int | None = None,
) -> dict[str, tuple[int | None, bool]]:
    """Each view's position and whether it is being rebuilt, in one query (and
    on PostgreSQL, locked until the transaction ends).

    :data:`CURRENT` reads as ``current`` when given (the position before the
    events a writer has just recorded), else as the store's last position.
    """
    keys = {}
    for view in views:
        keys[view.tracking_key(application_name)] = (view.name, False)
        keys[view.rebuild_key(application_name)] = (view.name, True)
    table = views[0].tracking_table
    lock = (
        f" FOR UPDATE OF {table}" if views[0].datastore.vendor == "postgresql" else ""
    )
    value = "notification_id" if current is not None else views[0]._position_sql()
    cursor.execute(
        f"SELECT application_name, {value} FROM {table} "
        f"WHERE application_name IN ({', '.join(['%s'] * len(keys))}){lock}",
        list(keys),
    )
    states: dict[str, tuple[int | None, bool]] = {
        view.name: (None, False) for view in views
    }
    for key, value in cursor.fetchall():
        name, is_marker = keys[key]
        position, marked = states[name]
        if is_marker:
            states[name] = (position, True)
        else:
            number = int(value)
            if number == CURRENT and current is not None:
                number = current
            states[name] = (number, marked)
    return states


def mark_behind(
    views: Sequence[View], position: int, application_name: str = UPSTREAM
) -> None:
    """Say that the views have applied events up to ``position`` only, where
    they were :data:`CURRENT`: called by a writer of events it does not apply
    (async mode), in its transaction, before it commits."""
    if not views:
        return
    keys = [view.tracking_key(application_name) for view in views]
    with views[0].datastore.transaction() as cursor:
        cursor.execute(
            f"UPDATE {views[0].tracking_table} SET notification_id = %s "
            f"WHERE application_name IN ({', '.join(['%s'] * len(keys))}) "
            f"AND notification_id = {CURRENT}",
            [position, *keys],
        )


def datetime_adapter(connection: BaseDatabaseWrapper) -> Callable[[datetime], Any]:
    """The backend's ``adapt_datetimefield_value``, with the cases that views
    write (aware datetimes) done directly where the backend's rule is simple."""
    adapt = connection.ops.adapt_datetimefield_value
    if connection.vendor == "postgresql":
        return lambda value: value  # psycopg takes aware datetimes as they are
    if connection.vendor == "sqlite" and settings.USE_TZ:
        zone = connection.timezone

        def to_text(value: datetime) -> Any:
            # Text of the naive time in the connection's zone, as Django stores it.
            if value.tzinfo is None:
                return adapt(value)
            return str(value.astimezone(zone).replace(tzinfo=None))

        return to_text
    return adapt


class ViewProjection(Projection[View]):
    """eventsourcing's projection interface over a :class:`View`, one event at a
    time (used by ``hero_project`` through eventsourcing's ProjectionRunner)."""

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(
            [Change(tracking.notification_id, domain_event)], tracking.application_name
        )


def _stay_current(
    cursor: CursorWrapper,
    views: Sequence[View],
    changes: Sequence[Change],
    application_name: str,
) -> bool:
    """For the events a writer has just recorded: True if every view had applied
    all events before them and none is being rebuilt, the views' positions then
    being (or set to) :data:`CURRENT`; otherwise change nothing and return False.

    A view at :data:`CURRENT` stays there without a write: only writers of events
    change it from there, and they wait for this writer's lock; so does a
    rebuild starting.
    """
    table = views[0].tracking_table
    keys = [view.tracking_key(application_name) for view in views]
    markers = [view.rebuild_key(application_name) for view in views]
    cursor.execute(
        f"SELECT application_name, notification_id FROM {table} "
        f"WHERE application_name IN ({', '.join(['%s'] * (len(keys) + len(markers)))})",
        [*keys, *markers],
    )
    found = {key: int(value) for key, value in cursor.fetchall()}
    if set(found) != set(keys):
        return False  # a view never written yet, or one being rebuilt
    values = set(found.values())
    if values == {CURRENT}:
        return True
    before = changes[0].position - 1
    if values != {before}:
        return False
    # Every view exactly at the position before: make them current, unless one
    # moved meanwhile (PostgreSQL: a worker holding its row; the UPDATE waits).
    in_keys = ", ".join(["%s"] * len(keys))
    cursor.execute(
        f"UPDATE {table} SET notification_id = {CURRENT} "
        f"WHERE application_name IN ({in_keys}) AND notification_id = %s",
        [*keys, before],
    )
    moved: int = cursor.rowcount
    if moved and moved != len(keys):
        # Put back the ones just moved: none was CURRENT (only writers set it,
        # and they wait for this one).
        cursor.execute(
            f"UPDATE {table} SET notification_id = %s "
            f"WHERE application_name IN ({in_keys}) AND notification_id = {CURRENT}",
            [before, *keys],
        )
    return moved == len(keys)
