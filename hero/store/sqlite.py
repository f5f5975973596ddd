"""hero on Django's SQLite backend: its own cursor, for the store's few fixed
statements, and its own transactions when the caller has none."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from django.db.backends.utils import CursorWrapper, debug_transaction

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper


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


@contextmanager
def direct_transaction(cursor: CursorWrapper) -> Iterator[bool]:
    """A transaction of hero's own on SQLite, when the caller has none:
    ``BEGIN`` (in the connection's ``transaction_mode``, as Django's would be)
    sent on ``cursor``, the commit or rollback made on the driver's connection.
    Yields False, doing nothing, where that cannot be (not SQLite, or inside
    the caller's transaction): the caller then opens an atomic block as usual.

    Django's ``atomic()`` would switch the connection out of autocommit and
    back around the same three statements, at a cost of the order of the rest
    of a small write's Python. Like
    :func:`~hero.store.postgres.pipelined_transaction`, this bypasses Django's
    transaction management for the block (it sees the connection in
    autocommit mode, as it is between statements): nothing in it may use
    ``transaction.atomic()`` or ``on_commit()``. Django's query log (``DEBUG``)
    still shows the ``BEGIN``, ``COMMIT`` or ``ROLLBACK``."""
    connection: Any = cursor.db
    if (
        connection.vendor != "sqlite"
        or connection.in_atomic_block
        or not connection.get_autocommit()
    ):
        yield False
        return
    mode = connection.transaction_mode
    cursor.execute(f"BEGIN {mode}" if mode else "BEGIN", ())
    raw = connection.connection
    try:
        yield True
    except BaseException:
        with debug_transaction(connection, "ROLLBACK"), connection.wrap_database_errors:
            raw.rollback()
        raise
    try:
        with debug_transaction(connection, "COMMIT"), connection.wrap_database_errors:
            raw.commit()
    except BaseException:
        # A foreign key checked at the commit (deferred) keeps the transaction
        # open: nothing of it stays.
        with debug_transaction(connection, "ROLLBACK"), connection.wrap_database_errors:
            raw.rollback()
        raise


_QMARK_LIMIT = 1024  # distinct statements kept; hero sends far fewer


@functools.cache
def _fast_sqlite_cursor() -> Any:
    # Lazy: Django's SQLite backend module is imported only on sites that use it.
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
