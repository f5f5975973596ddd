"""Transactions that join the caller's, and the store's errors in eventsourcing's terms.

hero writes through ``django.db.connections`` inside ``transaction.atomic()``, so
its events join the caller's transaction: when a view's transaction rolls back,
the events it recorded roll back with it. Django's database errors leave the
store as eventsourcing's persistence errors, which callers of a recorder expect.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import connections, transaction
from django.db import utils as db_utils
from django.db.backends.utils import CursorWrapper
from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

from hero.conf import conf
from hero.exceptions import HeroError, StoreBusy
from hero.store.ordering import is_lock_timeout
from hero.store.postgres import pipelined_savepoint, pipelined_transaction
from hero.store.sqlite import direct_transaction, open_cursor

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper


T = TypeVar("T")

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


class VersionConflict(HeroError, IntegrityError):
    """An event was refused because its aggregate already has an event at that
    version: another writer recorded a change of the same aggregate first.

    hero's own calls decide again on the new state; a site's application that
    records through hero's store gets it as eventsourcing's ``IntegrityError``."""


class translate_errors:
    """Re-raise Django's database errors as eventsourcing's persistence errors
    (with ``lock_timeouts_only``, only a lock not free in time, as
    :class:`~hero.exceptions.StoreBusy`)."""

    __slots__ = ("alias", "lock_timeouts_only")

    def __init__(self, alias: str, *, lock_timeouts_only: bool = False) -> None:
        self.alias = alias
        self.lock_timeouts_only = lock_timeouts_only

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if not isinstance(error, db_utils.Error):
            return
        if is_lock_timeout(error):
            raise _store_busy(self.alias, error) from error
        if self.lock_timeouts_only:
            return
        raise _translated(self.alias, error) from error


def _translated(alias: str, error: db_utils.Error) -> PersistenceError:
    """Django's database error as the eventsourcing error callers expect."""
    for django_error, eventsourcing_error in _ERROR_TRANSLATIONS:
        if isinstance(error, django_error):
            return eventsourcing_error(f"Database {alias!r}: {error}".strip())
    return PersistenceError(f"Database {alias!r}: {error}".strip())  # pragma: no cover


def _version_taken(error: BaseException) -> bool:
    """Whether PostgreSQL refused a row for a duplicate key that means a lost
    race: an event's aggregate version."""
    # Lazy: the store is importable before Django has loaded the models.
    from hero.models import StoredEvent

    cause: BaseException | None = error
    while cause is not None:
        if getattr(cause, "sqlstate", None) == "23505":  # unique_violation
            diag = getattr(cause, "diag", None)
            return getattr(diag, "table_name", None) == StoredEvent._meta.db_table
        cause = cause.__cause__
    return False


def lost_a_deadlock(error: BaseException) -> bool:
    """Whether the database rolled ``error``'s transaction back to break a
    deadlock (or a serialization failure): nothing of it was kept, and the same
    work may simply be done again."""
    cause: BaseException | None = error
    while cause is not None:
        if getattr(cause, "sqlstate", None) in {"40P01", "40001"}:  # PostgreSQL
            return True
        if type(cause).__module__.startswith("MySQLdb") and getattr(cause, "args", ())[
            :1
        ] == (1213,):  # ER_LOCK_DEADLOCK
            return True
        cause = cause.__cause__
    return False


def _store_busy(alias: str, error: BaseException) -> StoreBusy:
    setting = (
        "the 'timeout' database option"
        if type(error.__cause__).__module__ == "sqlite3"
        else f"HERO_LOCK_TIMEOUT ({conf.HERO_LOCK_TIMEOUT:g}s)"
    )
    return StoreBusy(
        f"Database {alias!r}: another transaction held the event store's "
        "ordering lock (or, with the trigger log on, the lock of the same "
        f"user's log) for longer than {setting}; nothing was recorded. Keep "
        "transactions that record achievements short, or raise the timeout."
    )


#: The scratch key of the callbacks to call after the commit.
_AFTER_COMMIT = "after_commit"
#: The scratch key of what :meth:`DjangoDatastore.at_commit` keeps.
_AT_COMMIT = "at_commit"
#: The scratch key that says the transaction is hero's own, not the caller's.
_OWN = "own"
#: The scratch key that says the transaction wrote nothing to keep
#: (:meth:`DjangoDatastore.discard`).
_DISCARD = "discard"


def _kept(scratch: dict[str, Any]) -> bool:
    return not scratch.get(_DISCARD)


logger = logging.getLogger("hero.store")


def _call_quietly(callback: Callable[[str], object], alias: str) -> None:
    """Call ``callback(alias)`` after a commit, logging a database error."""
    try:
        callback(alias)
    except (db_utils.Error, PersistenceError):
        logger.warning(
            "Database %r: %s failed after the commit; it is done again later.",
            alias,
            getattr(callback, "__name__", callback),
            exc_info=True,
        )


# The database alias, the cursor, and what the store keeps for the rest of the
# transaction (:meth:`DjangoDatastore.scratch`), of the atomic block hero itself
# opened.
_owned_atomic: ContextVar[tuple[str, CursorWrapper, dict[str, Any]] | None] = (
    ContextVar("hero_owned_atomic", default=None)
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
        blocks of their own: a failure anywhere in it rolls all of it back.
        When the caller has no transaction, hero's own is begun and committed
        without Django's transaction management: on SQLite by
        :func:`~hero.store.sqlite.direct_transaction`.

        On PostgreSQL, a transaction of hero's own runs in one pipeline
        (:func:`~hero.store.postgres.pipelined_transaction`), and so does its
        savepoint in the caller's (:func:`~hero.store.postgres.pipelined_savepoint`),
        so an event whose version was taken meanwhile may be refused only at
        the commit or the savepoint's end: that is
        raised as :class:`VersionConflict` too, and so is a deadlock the
        database broke by rolling this work back (writers of the read tables
        and a ``hero_project`` worker can meet in one), where nothing else of
        the transaction was lost with it."""
        pipelined = False  # hero's statements in a pipeline: errors come late
        entered = False  # hero's transaction or savepoint begun
        scratch: dict[str, Any] = {}
        try:
            # Other errors keep Django's types here: callers tell them apart.
            with (
                translate_errors(self.alias, lock_timeouts_only=True),
                ExitStack() as stack,
            ):
                kept = functools.partial(_kept, scratch)
                own = stack.enter_context(
                    pipelined_transaction(self.connection, kept=kept)
                )
                # In the caller's transaction: a savepoint, on PostgreSQL with
                # everything in one batch, waited for only where a result is
                # read and at the end. Either batch is entered before the
                # cursor is made, which is then one of the batch's.
                pipelined = own or (
                    self.vendor == "postgresql"
                    and stack.enter_context(
                        pipelined_savepoint(self.connection, kept=kept)
                    )
                )
                cursor = stack.enter_context(open_cursor(self.connection))
                own = own or (
                    not pipelined and stack.enter_context(direct_transaction(cursor))
                )
                scratch[_OWN] = own
                if not own and not pipelined:
                    stack.enter_context(transaction.atomic(using=self.alias))
                entered = True
                token = _owned_atomic.set((self.alias, cursor, scratch))
                try:
                    yield
                    if _kept(scratch):
                        # Queued last: sent with the COMMIT (PostgreSQL).
                        for send, value in scratch.pop(_AT_COMMIT, {}).values():
                            send(cursor, value)
                finally:
                    _owned_atomic.reset(token)
        except (db_utils.Error, PersistenceError) as error:
            # Django's errors, or eventsourcing's (translated on the way out of
            # a block of the store's own): either way the cause tells.
            if isinstance(error, VersionConflict):
                raise
            if _version_taken(error):
                raise VersionConflict(f"Database {self.alias!r}: {error}") from error
            # Read after the block ended: the caller's transaction, if any.
            if lost_a_deadlock(error) and (
                self.vendor == "postgresql" or not self.connection.in_atomic_block
            ):
                # Rolled back to break a deadlock with another writer of the
                # read tables: all of hero's work (a savepoint of it on
                # PostgreSQL; MySQL ends the whole transaction, so only one of
                # hero's own) is undone, and it is decided and written again.
                raise VersionConflict(
                    f"Database {self.alias!r}: lost a deadlock: {error}"
                ) from error
            if (pipelined or not entered) and isinstance(error, db_utils.Error):
                # A statement of hero's that failed at the commit or the end
                # of the pipeline, or beginning hero's transaction (a lost
                # connection): an error as it would have been where it was
                # sent, but for foreign keys, which PostgreSQL checks at the
                # commit in any case.
                if getattr(error.__cause__, "sqlstate", None) != "23503":
                    raise _translated(self.alias, error) from error
            raise
        for callback in scratch.get(_AFTER_COMMIT, ()):
            if self.connection.in_atomic_block:  # a savepoint in the caller's
                transaction.on_commit(
                    functools.partial(_call_quietly, callback, self.alias),
                    using=self.alias,
                )
            else:
                _call_quietly(callback, self.alias)

    def discard(self) -> None:
        """Say that the transaction hero opened wrote nothing worth keeping:
        on PostgreSQL it ends with ``ROLLBACK`` (or its savepoint is rolled
        back), which lets go of what it took (the store's lock, a reserved
        position's mark) at once; elsewhere it commits as usual."""
        scratch = self.scratch()
        if scratch is not None:
            scratch[_DISCARD] = True

    def owns_transaction(self) -> bool:
        """Whether the writes now go to a transaction hero opened itself (not a
        savepoint in the caller's), which commits as soon as hero's work is done."""
        scratch = self.scratch()
        return bool(scratch and scratch.get(_OWN))

    def after_commit(self, callback: Callable[[str], object]) -> None:
        """Call ``callback(alias)`` once, right after the transaction being
        written commits (never if it rolls back): at the end of a transaction
        hero opened, else at the caller's commit (``transaction.on_commit``).

        Its work is done by then, so a database error in it is logged, not
        raised: whatever it left undone is picked up later (linking the chain:
        by the next writer, a follower or ``hero_verify``)."""
        scratch = self.scratch()
        if scratch is not None:
            scratch.setdefault(_AFTER_COMMIT, {})[callback] = None
            return
        transaction.on_commit(
            functools.partial(_call_quietly, callback, self.alias), using=self.alias
        )

    def at_commit(
        self,
        key: str,
        make: Callable[[], T],
        send: Callable[[CursorWrapper, T], object],
    ) -> T | None:
        """PostgreSQL, in a transaction hero opened itself (one batch, sent
        with its ``COMMIT``): the value kept under ``key`` for the rest of the
        transaction (``make()`` the first time), and ``send(cursor, value)``
        called at its end, once, so that the statements it queues go to the
        server with the ``COMMIT``, and whatever rows they lock are locked for
        the commit alone. None elsewhere (the caller's transaction, another
        backend), where nothing is kept."""
        scratch = self.scratch()
        if scratch is None or not scratch.get(_OWN) or self.vendor != "postgresql":
            return None
        kept = scratch.setdefault(_AT_COMMIT, {})
        if key not in kept:
            kept[key] = (send, make())
        value: T = kept[key][1]
        return value

    def scratch(self) -> dict[str, Any] | None:
        """What the store keeps until the end of the transaction hero opened
        with :meth:`owned_transaction` (None outside one): results read ahead
        in one round trip, for later steps of the same transaction."""
        owned = _owned_atomic.get()
        return owned[2] if owned is not None and owned[0] == self.alias else None

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    def transaction(self) -> AbstractContextManager[CursorWrapper]:
        """A cursor in an atomic block: a new transaction, or a savepoint in the
        caller's, rolled back (and nothing written) if anything inside fails.
        Inside :meth:`owned_transaction`, its cursor."""
        owned = _owned_atomic.get()
        if owned is not None and owned[0] == self.alias:
            return _Joined(self.alias, owned[1])
        return self._atomic()

    @contextmanager
    def _atomic(self) -> Iterator[CursorWrapper]:
        with (
            translate_errors(self.alias),
            transaction.atomic(using=self.alias),
            open_cursor(self.connection) as cursor,
        ):
            yield cursor

    def cursor(self) -> AbstractContextManager[CursorWrapper]:
        """A cursor for reads, in the caller's transaction if there is one."""
        return _Reading(self.alias)


class _Joined:
    """The cursor of hero's transaction, joined, its errors translated as
    :class:`translate_errors` does. (A class rather than a generator: these
    are entered several times in every award.)"""

    __slots__ = ("alias", "cursor")

    def __init__(self, alias: str, cursor: CursorWrapper) -> None:
        self.alias = alias
        self.cursor = cursor

    def __enter__(self) -> CursorWrapper:
        return self.cursor

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        translate_errors(self.alias).__exit__(kind, error, traceback)


class _Reading(_Joined):
    """A new cursor, closed at the end, its errors translated."""

    __slots__ = ()

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def __enter__(self) -> CursorWrapper:
        with translate_errors(self.alias):
            self.cursor = open_cursor(connections[self.alias])
        return self.cursor

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        self.cursor.__exit__(kind, error, traceback)  # closes it
        translate_errors(self.alias).__exit__(kind, error, traceback)
