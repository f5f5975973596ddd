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
        return super().max_tracking_id(self.tracking_key(application_name))

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
) -> int:
    """Apply ``changes`` to each view (on one database) in one transaction:
    one read of their positions, their rows, one write of their positions.

    ``users_exist`` says the caller knows every user in ``changes`` exists
    (inline, where the user was just given); otherwise rows of users deleted
    since are left out of views that refer to users. Returns the largest
    number of changes new to a view.
    """
    if not changes or not views:
        return 0
    datastore = views[0].datastore
    applied = 0
    with datastore.transaction() as cursor:
        if not rebuilding and _advance_if_next(
            cursor, views, changes, application_name
        ):
            # The common inline case: every view was just before these changes.
            with pipelined(cursor):
                for view in views:
                    view._write(cursor, changes, users_exist)
            return len(changes)
        states = _states(cursor, views, application_name)
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
            positions.append((view.tracking_key(application_name), fresh[-1].position))
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
    cursor: CursorWrapper, views: Sequence[View], application_name: str
) -> dict[str, tuple[int | None, bool]]:
    """Each view's position and whether it is being rebuilt, in one query (and
    on PostgreSQL, locked until the transaction ends)."""
    keys = {}
    for view in views:
        keys[view.tracking_key(application_name)] = (view.name, False)
        keys[view.rebuild_key(application_name)] = (view.name, True)
    lock = " FOR UPDATE" if views[0].datastore.vendor == "postgresql" else ""
    cursor.execute(
        f"SELECT application_name, notification_id FROM {views[0].tracking_table} "
        f"WHERE application_name IN ({', '.join(['%s'] * len(keys))}){lock}",
        list(keys),
    )
    states: dict[str, tuple[int | None, bool]] = {
        view.name: (None, False) for view in views
    }
    for key, value in cursor.fetchall():
        name, is_marker = keys[key]
        position, marked = states[name]
        states[name] = (position, True) if is_marker else (int(value), marked)
    return states


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
    return adapt  # type: ignore[no-any-return]


class ViewProjection(Projection[View]):
    """eventsourcing's projection interface over a :class:`View`, one event at a
    time (used by ``hero_project`` through eventsourcing's ProjectionRunner)."""

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:  # type: ignore[override]
        self.view.apply(
            [Change(tracking.notification_id, domain_event)], tracking.application_name
        )


def _advance_if_next(
    cursor: CursorWrapper,
    views: Sequence[View],
    changes: Sequence[Change],
    application_name: str,
) -> bool:
    """Move every view's position to the last change, in one statement, if and
    only if each view is exactly one position before the first change and none
    is being rebuilt; otherwise change nothing and return False."""
    table = views[0].tracking_table
    keys = [view.tracking_key(application_name) for view in views]
    markers = [view.rebuild_key(application_name) for view in views]
    first, last = changes[0].position, changes[-1].position
    if [c.position for c in changes] != list(range(first, last + 1)):
        return False
    in_keys = ", ".join(["%s"] * len(keys))
    in_markers = ", ".join(["%s"] * len(markers))
    cursor.execute(
        f"UPDATE {table} SET notification_id = %s "
        f"WHERE application_name IN ({in_keys}) AND notification_id = %s "
        f"AND NOT EXISTS (SELECT 1 FROM {table} WHERE application_name IN ({in_markers}))",
        [last, *keys, first - 1, *markers],
    )
    moved = cursor.rowcount
    if moved == len(keys):
        return True
    if moved:
        # Some views were behind or ahead: put back the ones just moved (none
        # held ``last`` before, the position of an event of this transaction).
        cursor.execute(
            f"UPDATE {table} SET notification_id = %s "
            f"WHERE application_name IN ({in_keys}) AND notification_id = %s",
            [first - 1, *keys, last],
        )
    return False
