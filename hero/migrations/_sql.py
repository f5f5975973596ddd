"""Operations that hero's migrations share (not a migration: the loader skips
modules whose names begin with an underscore)."""

from typing import Any

import sqlparse
from django.db import migrations


class PostgreSQLOnly(migrations.RunSQL):
    """SQL that runs on PostgreSQL and does nothing elsewhere.

    A script of several statements is sent one statement at a time. Django's
    PostgreSQL backend sends a script whole, which psycopg can do only while
    it binds parameters in the process (Django's default): with the
    database's ``"server_side_binding": True`` option, PostgreSQL refuses
    several commands in one statement."""

    def __init__(self, sql: Any, reverse_sql: Any = None, **options: Any) -> None:
        super().__init__(_statements(sql), _statements(reverse_sql), **options)

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def _statements(sql: Any) -> Any:
    """A script's statements as a list (sqlparse, which Django's migrations
    use to split scripts on other backends, knows PostgreSQL's ``$$`` bodies);
    anything else (None, ``RunSQL.noop``, a list already) as it is."""
    if not isinstance(sql, str) or sql == migrations.RunSQL.noop:
        return sql
    return [statement for statement in sqlparse.split(sql) if statement.strip()]
