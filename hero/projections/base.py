"""Read models: tables kept by events, each following the store from its own position.

A read model applies a batch of events in one transaction: its rows and its
position in the store are written together, so it is never half-updated and
never applies an event twice (events at or before its position are skipped).
Events it does not use still move its position forward.

A read model that finds a gap between its position and the first event it is
given (events recorded while projections were off, or while another mode ran)
first reads and applies the missing events, in the same transaction.

Positions, the ``CURRENT`` marker and the rebuild markers are kept by
:mod:`hero.store.positions`; this module decides when to move them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple
from uuid import UUID

from django.conf import settings
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import OperationalError, Tracking
from eventsourcing.projection import Projection

from hero.store.ordering import hold_ordering_lock
from hero.store.positions import (
    CURRENT,
    UPSTREAM,
    tracking_key,
)
from hero.store.postgres import pipelined
from hero.store.recorders import DjangoTrackingRecorder
from hero.store.transactions import VersionConflict, lost_a_deadlock
from hero.users import existing_user_pks

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper
    from django.db.models import Model

    from hero.store.transactions import DjangoDatastore


class Change(NamedTuple):
    """A domain event at its position in the store."""

    position: int
    event: DomainEventProtocol[UUID]


#: A stored event as the store's recorder selects it (``select_rows``):
#: (position, originator id, originator version, topic, state).
Row = tuple[int, Any, int, str, Any]


def store_changes(
    after: int, until: int | None, batch_size: int
) -> Iterator[list[Change]]:
    """The store's events after position ``after`` (up to ``until``), in batches."""
    position = after
    while batch := read_changes(position, batch_size, until):
        yield batch
        position = batch[-1].position


def read_changes(after: int, limit: int, until: int | None = None) -> list[Change]:
    """Up to ``limit`` of the store's events after position ``after`` (and not
    after ``until``), in order."""
    return decode(read_rows(after, limit, until))


def read_rows(after: int, limit: int, until: int | None = None) -> list[Row]:
    """:func:`read_changes`, the events left as stored."""
    # Lazy: the ledger imports the store, which read models extend; reading
    # events through it is the one place the read side needs the write side.
    from hero.ledger import get_ledger

    return get_ledger().recorder.select_rows(
        start=after, limit=limit, stop=until, inclusive_of_start=False
    )


def decode(rows: Sequence[Row]) -> list[Change]:
    """The domain events of stored rows, at their positions."""
    # Lazy, as in read_rows(): the mapper is the ledger's.
    from hero.ledger import get_ledger

    return [Change(*pair) for pair in get_ledger().decode_rows(rows)]


class ReadModel(DjangoTrackingRecorder):
    """Read tables and their tracking position; subclasses write the rows."""

    #: The projection's name, used in its tracking key and on the command line.
    name: ClassVar[str]
    #: Tables a rebuild empties (the read model's own; listed child tables first).
    tables: ClassVar[Sequence[str]] = ()
    #: Whether rows of users deleted since must be left out (tables with a
    #: foreign key to the user model).
    checks_users: ClassVar[bool] = True
    #: Topics of the events the read model writes rows for (None: every
    #: topic); other events only move its position, and a rebuild does not
    #: decode them for it.
    topics: ClassVar[frozenset[str] | None] = None

    # The tracking recorder's interface, on this read model's own keys --------

    def max_tracking_id(self, application_name: str) -> int | None:
        """The read model's position, ``CURRENT`` read as the store's last."""
        return self.positions.read(tracking_key(self.name, application_name))

    def _insert_tracking(self, cursor: CursorWrapper, tracking: Tracking) -> None:
        key = tracking_key(self.name, tracking.application_name)
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
        """Apply the changes not yet applied (:func:`apply_alone`); return
        how many were new."""
        return apply_alone(
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

    def copy(self, cursor: CursorWrapper, after: int, until: int) -> set[int]:
        """Write the rows of the store's events at positions in (``after``,
        ``until``] in SQL, straight from the store, where the read model can;
        return the positions written. A rebuild passes the other events to
        :meth:`write`."""
        return set()

    def _missed(self, after: int, before: int) -> list[Change]:
        return read_changes(after, before - after, until=before - 1)

    def _write(
        self, cursor: CursorWrapper, changes: Sequence[Change], users_exist: bool
    ) -> None:
        """Write ``changes``, leaving out users deleted since unless the caller
        knows they all exist (or the read model does not refer to users)."""
        users = None
        if self.checks_users and not users_exist:
            pks = {getattr(c.event, "user_pk", None) for c in changes} - {None}
            users = existing_user_pks(self.datastore.alias, pks)  # type: ignore[arg-type]
        self.write(cursor, changes, users)

    # Rebuilding --------------------------------------------------------------

    def start_rebuild(self, application_name: str = UPSTREAM) -> bool:
        """Empty the read model and mark it as being rebuilt; False if a rebuild
        was already under way (it is resumed, not restarted)."""
        with self.datastore.transaction() as cursor:
            # Held off until now, an inline writer sees the marker.
            with pipelined(cursor):
                hold_ordering_lock(cursor)
            _, marked = self.positions.states(cursor, [self.name], application_name)[
                self.name
            ]
            if marked:
                return False
            qn = self.datastore.connection.ops.quote_name
            for table in self.tables:
                cursor.execute(f"DELETE FROM {qn(table)}")
            self.positions.mark_rebuilding(cursor, self.name, application_name)
        return True

    def finish_rebuild(
        self, cursor: CursorWrapper, application_name: str = UPSTREAM
    ) -> None:
        self.positions.unmark_rebuilding(cursor, self.name, application_name)

    def is_rebuilding(self, application_name: str = UPSTREAM) -> bool:
        with self.datastore.cursor() as cursor:
            states = self.positions.states(
                cursor, [self.name], application_name, lock=False
            )
            return states[self.name][1]


def apply_read_models(
    models: Sequence[ReadModel],
    changes: Sequence[Change],
    application_name: str = UPSTREAM,
    *,
    rebuilding: bool = False,
    users_exist: bool = False,
    recorded: bool = False,
) -> int:
    """Apply ``changes`` to each read model (on one database) in one
    transaction: one read of their positions, their rows, one write of their
    positions.

    ``users_exist`` says the caller knows every user in ``changes`` exists
    (inline, where the user was just given); otherwise rows of users deleted
    since are left out of read models that refer to users. ``recorded`` says
    that ``changes`` are the events this transaction has just recorded, so the
    last in the store, written under its ordering lock (inline). Returns the
    largest number of changes new to a read model.
    """
    if not changes or not models:
        return 0
    positions = models[0].positions
    names = [model.name for model in models]
    applied = 0
    with positions.datastore.transaction() as cursor:
        before = changes[0].position - 1 if recorded else None
        if before is not None and positions.stay_current(
            cursor, names, before, application_name
        ):
            # The common case: every read model had applied all events before these.
            with pipelined(cursor):
                for model in models:
                    model._write(cursor, changes, users_exist)
            return len(changes)
        states = positions.states(cursor, names, application_name, current=before)
        reached: list[tuple[str, int]] = []
        for model in models:
            position, marked = states[model.name]
            if marked and not rebuilding:
                continue  # the rebuild will apply these
            fresh = [c for c in changes if position is None or c.position > position]
            if not fresh:
                continue
            if not rebuilding and fresh[0].position > (position or 0) + 1:
                fresh = [*model._missed(position or 0, fresh[0].position), *fresh]
            model._write(cursor, fresh, users_exist)
            # A writer of the store's last events leaves the read model current.
            reached.append(
                (
                    tracking_key(model.name, application_name),
                    CURRENT if recorded else fresh[-1].position,
                )
            )
            applied = max(applied, len(fresh))
        positions.write(cursor, reached)
    return applied


def apply_alone(
    models: Sequence[ReadModel],
    changes: Sequence[Change],
    application_name: str = UPSTREAM,
    *,
    rebuilding: bool = False,
    users_exist: bool = False,
) -> int:
    """:func:`apply_read_models` where no writer of the events applies them (a
    worker), in a transaction of hero's own (a savepoint in the caller's): on
    PostgreSQL one batch (:meth:`DjangoDatastore.owned_transaction`), which
    waits for the server where a result is read, and once at the end with the
    writes and the ``COMMIT``."""
    with models[0].datastore.owned_transaction():
        return apply_read_models(
            models,
            changes,
            application_name,
            rebuilding=rebuilding,
            users_exist=users_exist,
        )


def apply_rows(
    models: Sequence[ReadModel],
    rows: Sequence[Row],
    application_name: str = UPSTREAM,
) -> None:
    """Apply consecutive rows of the store to read models being rebuilt, in
    one transaction with their positions.

    Each read model first copies what it can in SQL (:meth:`ReadModel.copy`);
    only the rest of the events of its topics are decoded and written, and
    each event is decoded once for all of them.
    """
    if not rows or not models:
        return
    positions = models[0].positions
    decoded: dict[int, Change] = {}
    with positions.datastore.transaction() as cursor:
        states = positions.states(
            cursor, [model.name for model in models], application_name
        )
        reached: list[tuple[str, int]] = []
        for model in models:
            position = states[model.name][0] or 0
            fresh = [row for row in rows if row[0] > position]
            if not fresh:
                continue
            copied = model.copy(cursor, fresh[0][0] - 1, fresh[-1][0])
            topics = model.topics
            wanted = [
                row
                for row in fresh
                if row[0] not in copied and (topics is None or row[3] in topics)
            ]
            new = [row for row in wanted if row[0] not in decoded]
            decoded.update((change.position, change) for change in decode(new))
            changes = [decoded[row[0]] for row in wanted]
            if changes:
                model._write(cursor, changes, users_exist=False)
            reached.append((tracking_key(model.name, application_name), fresh[-1][0]))
        positions.write(cursor, reached)


def datetime_adapter(connection: BaseDatabaseWrapper) -> Callable[[datetime], Any]:
    """The backend's ``adapt_datetimefield_value``, with the cases that views
    write (aware datetimes) done directly where the backend's rule is simple."""
    adapt = connection.ops.adapt_datetimefield_value
    if connection.vendor == "postgresql":
        return lambda value: value  # psycopg takes aware datetimes as they are
    if connection.vendor == "sqlite" and settings.USE_TZ:
        zone = connection.timezone
        utc = zone is UTC
        # The last datetime and its text: a row's times are often one object
        # (an unlock's "unlocked at" and "updated at"), and datetimes are immutable.
        last: list[Any] = [None, None]

        def to_text(value: datetime) -> Any:
            # Text of the naive time in the connection's zone, as Django stores it.
            if value is last[0]:
                return last[1]
            if value.tzinfo is None:
                text = adapt(value)
            elif utc and value.tzinfo is UTC:  # most: the text without "+00:00"
                text = str(value)[:-6]
            else:
                text = str(value.astimezone(zone).replace(tzinfo=None))
            last[0], last[1] = value, text
            return text

        return to_text
    return adapt


class ReadModels(DjangoTrackingRecorder):
    """The read models one ``hero_project`` worker follows (the subclass names
    them): each run of events is applied to all of them in one transaction,
    as the writer applies them inline, so that their tables agree at every
    commit. The position followed is the least of theirs; a read model ahead
    of it skips what it has applied."""

    model_classes: ClassVar[Sequence[type[ReadModel]]] = ()

    def __init__(
        self, datastore: DjangoDatastore, events_model: type[Model] | None = None
    ) -> None:
        super().__init__(datastore, events_model)
        self.models = [model_class(datastore) for model_class in self.model_classes]

    def max_tracking_id(self, application_name: str) -> int | None:
        positions = [model.max_tracking_id(application_name) for model in self.models]
        known = [position for position in positions if position is not None]
        return min(known) if len(known) == len(positions) else None

    def apply(self, changes: Sequence[Change], application_name: str = UPSTREAM) -> int:
        """Apply the changes each read model has not applied
        (:func:`apply_alone`); return the largest number new to one of them."""
        return apply_alone(self.models, changes, application_name)


class ReadModelProjection(Projection[ReadModels]):
    """eventsourcing's projection interface over :class:`ReadModels` (used by
    ``hero_project`` through eventsourcing's ProjectionRunner): one event at a
    time, or consecutive events in one transaction."""

    #: How often events are applied again after the database broke a deadlock
    #: by rolling their transaction back (writers of the same rows, at once).
    attempts: ClassVar[int] = 5

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_events([(domain_event, tracking)])

    def process_events(self, events: Sequence[tuple[Any, Tracking]]) -> None:
        """Apply events in the order of their positions, in one transaction,
        which leaves the read model's position at the last."""
        if not events:
            return
        changes = [
            Change(tracking.notification_id, event) for event, tracking in events
        ]
        application_name = events[-1][1].application_name
        for attempt in range(1, self.attempts + 1):
            try:
                self.view.apply(changes, application_name)
            # A deadlock the database broke comes as the one or the other.
            except (OperationalError, VersionConflict) as error:
                if attempt == self.attempts or not lost_a_deadlock(error):
                    raise
                time.sleep(random.uniform(0, 0.01 * attempt))
            else:
                return
