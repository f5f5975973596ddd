"""hero's own cursor on Django's SQLite backend, for the store's few fixed statements."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

from django.db.backends.utils import CursorWrapper

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
