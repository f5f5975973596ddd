"""Operations that hero's migrations share (not a migration: the loader skips
modules whose names begin with an underscore)."""

from typing import Any

from django.db import migrations


class PostgreSQLOnly(migrations.RunSQL):
    """SQL that runs on PostgreSQL and does nothing elsewhere."""

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
