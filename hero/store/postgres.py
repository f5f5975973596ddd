"""PostgreSQL batches and pipelines: several statements sent in one round trip
(psycopg 3)."""

from __future__ import annotations

import functools
import logging
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from django.db.backends.utils import CursorWrapper, debug_transaction

logger = logging.getLogger("hero.store")


def pipelined(cursor: CursorWrapper) -> AbstractContextManager[Any]:
    """On PostgreSQL (psycopg 3), send the block's statements without waiting
    for each one's result: statements whose results are not read take one
    round trip to the server together, instead of one each. Elsewhere, and
    with psycopg 2 or a libpq older than 14 (no pipeline mode), the block runs
    as it is."""
    if cursor.db.vendor != "postgresql":
        return nullcontext()  # no generator to run on SQLite's hot path
    raw = cursor.db.connection
    if not _pipelines_supported(raw):
        return nullcontext()
    if in_pipeline(raw):
        # Inside a transaction's batch or pipeline: leaving a nested block
        # would make a round trip of its own.
        return nullcontext()
    return _pipeline(cursor.db, raw)


def _always() -> bool:
    return True


@contextmanager
def pipelined_transaction(
    connection: Any, *, kept: Callable[[], bool] = _always
) -> Iterator[bool]:
    """A transaction of hero's own on PostgreSQL, when the caller has none: one
    batch (:class:`_Batch`) around all of it, ``BEGIN`` and ``COMMIT`` sent as
    statements in it, so that the server is waited for only where a result is
    read and once at the end (``BEGIN`` travels with the first statements,
    ``COMMIT`` with the last writes). Statements whose results are not read
    fail at the next read or at the end. Yields False, doing nothing, where
    that cannot be (not psycopg 3, or inside the caller's transaction): the caller
    then opens an atomic block as usual. When ``kept()`` is false at the end
    (nothing was written), ``ROLLBACK`` is sent in place of ``COMMIT``.

    Django's transaction management is bypassed for the block (it sees the
    connection in autocommit mode, as it is between statements): nothing in
    it may use ``transaction.atomic()`` or ``on_commit()``.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield False
        return
    connection.ensure_connection()
    raw = connection.connection
    if not connection.get_autocommit() or not _batches_supported(raw):
        yield False
        return
    if in_pipeline(raw):
        yield False
        return
    with _between(
        connection,
        "BEGIN",
        lambda: ("COMMIT",) if kept() else ("ROLLBACK",),
        undo=lambda: _roll_back(raw),
    ):
        yield True


#: The savepoint of :func:`pipelined_savepoint` (one at a time: it is not
#: nested, and Django's names never take this form).
_SAVEPOINT = "hero_write"


@contextmanager
def pipelined_savepoint(
    connection: Any, *, kept: Callable[[], bool] = _always
) -> Iterator[bool]:
    """hero's work inside the caller's transaction on PostgreSQL: in a
    savepoint of hero's own, with one batch around all of it, ``SAVEPOINT``
    and ``RELEASE SAVEPOINT`` sent as statements in it (``SAVEPOINT`` travels
    with the first statements, ``RELEASE`` with the last writes), so that the
    server is waited for only where a result is read and once at the end.
    Whatever fails in the block, or at its end, is rolled back to the
    savepoint, and the caller's transaction goes on. Yields False, doing
    nothing, where that cannot be (not psycopg 3, or not in the caller's
    transaction): the caller then opens an atomic block. When
    ``kept()`` is false at the end (nothing was written), the savepoint is
    rolled back before its release, which lets go of its locks at once.

    Django's savepoint bookkeeping is bypassed for the block, as
    :func:`pipelined_transaction` bypasses its transactions: nothing in it
    may use ``transaction.atomic()``.
    """
    if connection.vendor != "postgresql" or not connection.in_atomic_block:
        yield False
        return
    raw = connection.connection
    if connection.needs_rollback or not _batches_supported(raw):
        yield False
        return
    if in_pipeline(raw):
        yield False
        return
    release = f"RELEASE SAVEPOINT {_SAVEPOINT}"
    with _between(
        connection,
        f"SAVEPOINT {_SAVEPOINT}",
        lambda: (
            (release,) if kept() else (f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}", release)
        ),
        undo=lambda: _roll_back_to_savepoint(connection),
    ):
        yield True


@contextmanager
def _between(
    connection: Any,
    first: str,
    last: Callable[[], tuple[str, ...]],
    *,
    undo: Callable[[], None],
) -> Iterator[None]:
    """One batch around the block (:class:`_Batch`), with ``first`` sent before
    it and the statements ``last()`` names after it; if anything fails, in the
    block or at its end (a statement refused skips the rest), ``undo`` is
    called before the error is raised, where anything was sent."""
    raw = connection.connection
    batch = _Batch(connection)
    try:
        with connection.wrap_database_errors:
            with debug_transaction(connection, first):  # in Django's query log
                raw.execute(first)
        yield
        with connection.wrap_database_errors:
            for statement in last():
                with debug_transaction(connection, statement):
                    raw.execute(statement)
            batch.send()
    except BaseException:
        batch.close()
        if batch.sent:
            with connection.wrap_database_errors:
                undo()
        raise
    batch.close()


@contextmanager
def _unprepared(raw: Any) -> Iterator[None]:
    """No statement prepared on the server in the block, whatever the site's
    ``prepare_threshold`` (``OPTIONS`` of the database; Django's default is
    None, none prepared). psycopg (3.3 at least) loses track of statements
    it prepared in a pipeline: when it reads a ``ROLLBACK``'s result there,
    as hero's are when a call writes nothing, it forgets them all and
    deallocates them on the server after the next statement it sends, which
    may be one it has just prepared; under concurrent writers it loses some
    in other ways too (keeping only the ``ROLLBACK`` unprepared still failed
    there). A statement it then believes prepared fails with "prepared
    statement does not exist"."""
    threshold = raw.prepare_threshold
    if threshold is None:
        yield
        return
    raw.prepare_threshold = None
    try:
        yield
    finally:
        raw.prepare_threshold = threshold


def _roll_back_to_savepoint(connection: Any) -> None:
    """Undo hero's work back to its savepoint, out of pipeline mode; if even
    that fails (the connection is lost), the caller's transaction can only
    roll back."""
    try:
        connection.connection.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        connection.connection.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    except Exception as error:  # the block's error is the one raised
        logger.debug("Could not roll back to hero's savepoint: %s", error)
        connection.needs_rollback = True


def _leave_after_error(pipeline: Any) -> None:
    """Leave pipeline mode after the block raised, its error being the one to
    raise. A refused statement aborts the rest of the pipeline, and psycopg
    would log that as a warning of its own ("error ignored terminating"): a
    lost race, which hero decides again, would be a warning in the site's
    logs at each retry."""
    try:
        pipeline.__exit__(None, None, None)
    except Exception as error:  # the pipeline's, after the block's: not raised
        logger.debug("Left a pipeline after an error: %s", error)


def _roll_back(raw: Any) -> None:
    """Roll back what is left of a transaction, out of pipeline mode."""
    if raw.pgconn.transaction_status != _IDLE:
        raw.rollback()


#: libpq's PQTRANS_IDLE: connected, not in a transaction.
_IDLE = 0


def in_pipeline(raw: Any) -> bool:
    """Whether psycopg connection ``raw`` is in pipeline mode, or sends its
    statements in a batch of hero's."""
    return raw in _batches or bool(raw.pgconn.pipeline_status)


#: The batch each connection is in, if any (one at a time per connection).
_batches: weakref.WeakKeyDictionary[Any, _Batch] = weakref.WeakKeyDictionary()

#: Statements a batch sends at most in one query (a bulk write in hero's
#: transaction, such as a backfill's, goes in several).
_BATCH_SIZE = 500


class _Binder:
    """Binds the parameters of statements for one psycopg connection, as
    Django does by default (in the process, with the connection's adapters),
    and keeps the statements it made from parameters that come again.

    Most of a call's statements are the same from one call to the next (the
    ordering lock with the followers' names, the positions reserved, the
    catalog row): binding them anew, with psycopg looking up an adapter for
    each value and building each array, was about half the time binding
    took. Only statements whose parameters are all strings, integers,
    booleans or None (or lists of strings) are kept, told apart by their
    types as well as their values (``1`` is not ``True``), and at most
    :data:`_KEPT_STATEMENTS` of them."""

    __slots__ = ("cursor", "kept")

    def __init__(self, raw: Any) -> None:
        # Lazy: psycopg is an optional dependency, present only with PostgreSQL.
        from psycopg import ClientCursor

        #: The cursor that binds, and sends each batch.
        self.cursor = ClientCursor(raw)
        self.kept: dict[tuple[Any, ...], str] = {}

    def bind(self, query: Any, params: Any) -> str:
        if params is None and type(query) is str:  # psycopg leaves it as it is
            return query
        key = _kept_key(query, params)
        if key is None:
            return self.cursor.mogrify(query, params)
        statement = self.kept.get(key)
        if statement is None:
            if len(self.kept) >= _KEPT_STATEMENTS:
                self.kept.clear()
            statement = self.kept[key] = self.cursor.mogrify(query, params)
        return statement


#: Statements a connection's :class:`_Binder` keeps at most (hero sends a few
#: dozen that repeat; more, and it starts again).
_KEPT_STATEMENTS = 256

_PLAIN = frozenset({str, int, bool, type(None)})


def _kept_key(query: Any, params: Any) -> tuple[Any, ...] | None:
    """What tells a statement bound from ``params`` apart, or None if it is
    not to be kept."""
    if type(query) is not str or not isinstance(params, (list, tuple)):
        return None
    key: list[Any] = [query]
    for value in params:
        kind = type(value)
        if kind in _PLAIN:
            key.append((kind, value))
        elif kind is list and all(type(item) is str for item in value):
            key.append((kind, tuple(value)))
        else:
            return None
    return tuple(key)


def _binder(wrapper: Any, raw: Any) -> _Binder:
    """The :class:`_Binder` of psycopg connection ``raw``, kept with Django's
    wrapper for as long as the connection lasts (a new connection, after a
    reconnection, gets a new one). Its cursor holds the results of the last
    batch until the next: one batch's, read into hero's cursors already."""
    kept: _Binder | None = getattr(wrapper, "_hero_binder", None)
    if kept is None or kept.cursor.connection is not raw or kept.cursor.closed:
        kept = wrapper._hero_binder = _Binder(raw)
    return kept


class _Batch:
    """Statements on one psycopg connection queued and sent together, as one
    query of several statements, where a result is first read and at the end.

    While a batch is open, every cursor the connection makes (Django's,
    through ``connection.cursor()``) is a :class:`_BatchCursor`, which binds
    its parameters in the process, as Django does by default, and queues the
    statement. One query of several statements is one exchange with the
    server and one statement for psycopg to send and read back: a pipeline
    costs psycopg and the server about as much per statement as a round trip
    of its own, minus the wait, and a call that awards sends a dozen. Such a
    query is never prepared on the server, whatever the site's
    ``prepare_threshold``. The first statement the server refuses raises
    where the results are read, and the rest are not run; the caller rolls
    back, as after a pipeline.
    """

    def __init__(self, wrapper: Any) -> None:
        raw = wrapper.connection
        if raw in _batches:
            raise RuntimeError("hero's statements are already batched here")
        self.wrapper = wrapper
        self.raw = raw
        binder = _binder(wrapper, raw)
        #: Binds each statement's parameters, with the connection's adapters.
        self.bind = binder.bind
        #: Sends the batch, and reads its results.
        self.cursor = binder.cursor
        #: (statement, its cursor, the cursor's statement it is).
        self.queued: list[tuple[str, _BatchCursor, int]] = []
        #: Whether anything reached the server (there is something to undo).
        self.sent = False
        self.factory = raw.cursor_factory
        raw.cursor_factory = functools.partial(_BatchCursor, self)
        _batches[raw] = self

    def add(self, statement: str, cursor: _BatchCursor) -> None:
        self.queued.append((statement, cursor, cursor.generation))
        if len(self.queued) >= _BATCH_SIZE:
            self.send()

    def send(self) -> None:
        """Send the statements queued, and hand each cursor its results."""
        queued, self.queued = self.queued, []
        if not queued:
            return
        # A newline before each semicolon ends a statement's closing comment.
        script = "\n;\n".join(statement for statement, _, _ in queued)
        self.sent = True
        try:
            with self.wrapper.wrap_database_errors:
                self.cursor.execute(script, prepare=False)
        except BaseException as error:
            for _, cursor, generation in queued:
                cursor.failed(error, generation)
            raise
        for number, (_, cursor, generation) in enumerate(queued):
            try:
                if number:
                    self.cursor.nextset()
                cursor.take(self.cursor, generation)
            except BaseException as error:  # a value that did not load
                for _, rest, later in queued[number:]:
                    rest.failed(error, later)
                raise

    def close(self) -> None:
        """Stop batching: statements not sent are dropped (the block failed)."""
        for _, cursor, generation in self.queued:
            cursor.failed(RuntimeError("not sent: hero's batch ended"), generation)
        self.queued = []
        self.raw.cursor_factory = self.factory
        _batches.pop(self.raw, None)


class _Query:
    """What Django's query log reads of a cursor's last statement."""

    __slots__ = ("statement",)

    def __init__(self, statement: str) -> None:
        self.statement = statement

    @property
    def query(self) -> bytes:
        return self.statement.encode()


class _BatchCursor:
    """A cursor of a connection in a :class:`_Batch`: its statements are
    queued, and its results read once the batch is sent (reading them sends
    it). What Django's cursor wrapper and hero use of a psycopg cursor."""

    def __init__(self, batch: _Batch, connection: Any, **_: Any) -> None:
        self.batch = batch
        self.connection = connection
        self.adapters = batch.cursor.adapters
        self._query: _Query | None = None
        #: Which of the cursor's statements the results are those of.
        self.generation = 0
        self.error: BaseException | None = None
        self._pending = 0
        self._rows: deque[Any] = deque()
        self._rowcount = -1
        self._description: Any = None

    def execute(self, query: Any, params: Any = None, **_: Any) -> _BatchCursor:
        self._start()
        self._queue(query, params)
        return self

    def executemany(self, query: Any, params_seq: Any, **_: Any) -> None:
        self._start()
        for params in params_seq:
            self._queue(query, params)

    def _start(self) -> None:
        self.generation += 1
        self.error = None
        self._pending = 0
        self._rows, self._rowcount, self._description = deque(), -1, None

    def _queue(self, query: Any, params: Any) -> None:
        statement = self.batch.bind(query, params)
        self._query = _Query(statement)
        self._pending += 1
        self.batch.add(statement, self)

    def take(self, results: Any, generation: int) -> None:
        """Take the results of one statement (an ``executemany``'s row
        counts add up); those of a statement executed before the last are
        dropped."""
        if generation != self.generation:
            return
        self._pending -= 1
        self._description = results.description
        if self._description is not None:
            self._rows.extend(results.fetchall())
        count = results.rowcount
        self._rowcount = count if self._rowcount < 0 else self._rowcount + count

    def failed(self, error: BaseException, generation: int) -> None:
        if generation == self.generation:
            self.error = error

    def _results(self) -> None:
        if self._pending and self.error is None:
            self.batch.send()
        if self.error is not None:
            raise self.error

    @property
    def rowcount(self) -> int:
        self._results()
        return self._rowcount

    @property
    def description(self) -> Any:
        self._results()
        return self._description

    def fetchone(self) -> Any:
        self._results()
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int = 1) -> list[Any]:
        self._results()
        return [self._rows.popleft() for _ in range(min(size, len(self._rows)))]

    def fetchall(self) -> list[Any]:
        self._results()
        taken, self._rows = list(self._rows), deque()
        return taken

    def __iter__(self) -> Iterator[Any]:
        self._results()
        while self._rows:
            yield self._rows.popleft()

    def close(self) -> None:
        """Nothing to let go of: the batch's own cursor holds the results."""

    def __enter__(self) -> _BatchCursor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


@contextmanager
def _pipeline(wrapper: Any, raw: Any) -> Iterator[None]:
    with _unprepared(raw), wrapper.wrap_database_errors:
        pipeline = raw.pipeline()
        pipeline.__enter__()
        try:
            yield
        except BaseException:
            _leave_after_error(pipeline)
            raise
        pipeline.__exit__(None, None, None)


def _batches_supported(raw: Any) -> bool:
    return hasattr(raw, "pgconn")  # psycopg 3 (psycopg 2 has no ClientCursor)


def _pipelines_supported(raw: Any) -> bool:
    if not hasattr(raw, "pipeline"):
        return False  # psycopg 2
    # Lazy: psycopg is an optional dependency, present only with PostgreSQL.
    from psycopg import Pipeline

    return bool(Pipeline.is_supported())


#: The channel on which writers announce new events, delivered at their commit.
CHANNEL = "hero_stored_event"

# The keys of Django's connection parameters that name the server and the login
# (Django adds its cursor class and adapters, which a bare connection does without).
_SERVER_PARAMETERS = ("dbname", "user", "password", "host", "port", "sslmode")


def announce(cursor: CursorWrapper) -> None:
    """Tell listeners that this transaction wrote events: ``NOTIFY``, which
    PostgreSQL delivers when (and only if) the transaction commits."""
    cursor.execute(f"NOTIFY {CHANNEL}")


class Listener:
    """A connection of its own that ``LISTEN``\\ s on the store's channel, so a
    follower wakes when events are committed instead of at its next poll."""

    def __init__(self, connection: Any) -> None:
        # Lazy: psycopg is an optional dependency, present only with PostgreSQL.
        import psycopg

        params = connection.get_connection_params()
        server = {key: params[key] for key in _SERVER_PARAMETERS if key in params}
        self.connection = psycopg.connect(**server, connect_timeout=5, autocommit=True)
        self.connection.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for events; whether some were announced
        (announcements received meanwhile count at once)."""
        return any(
            True for _ in self.connection.notifies(timeout=timeout, stop_after=1)
        )

    def close(self) -> None:
        self.connection.close()
