"""SQLite: ``hero_user_key`` as a ``WITHOUT ROWID`` table.

The table is looked up by its text primary key only (with every award's read
of its aggregate's events), and a user's first award inserts into it. As a
rowid table it is two b-trees, the rows and the index of the primary key; as a
``WITHOUT ROWID`` table it is one: half the lookups, and one page fewer to
write at that first award's commit. Nothing changes on the other backends,
nor in Django's model of the table.

A later migration that alters this table on SQLite would have Django rebuild
it as a rowid table: such a migration must make it ``WITHOUT ROWID`` again.
"""

from typing import Any

from django.db import migrations

COLUMNS = (
    '"user_pk" varchar(255) NOT NULL PRIMARY KEY, '
    '"wrapped" BLOB NOT NULL, "created_at" datetime NOT NULL'
)


def _rebuild(schema_editor: Any, options: str) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    for statement in (
        f"CREATE TABLE hero_user_key__new ({COLUMNS}){options}",
        "INSERT INTO hero_user_key__new (user_pk, wrapped, created_at) "
        "SELECT user_pk, wrapped, created_at FROM hero_user_key",
        "DROP TABLE hero_user_key",
        "ALTER TABLE hero_user_key__new RENAME TO hero_user_key",
    ):
        schema_editor.execute(statement)


def without_rowid(apps: Any, schema_editor: Any) -> None:
    _rebuild(schema_editor, " WITHOUT ROWID")


def with_rowid(apps: Any, schema_editor: Any) -> None:
    _rebuild(schema_editor, "")


class Migration(migrations.Migration):
    dependencies = [("hero", "0003_scale_out")]

    operations = [migrations.RunPython(without_rowid, with_rowid, elidable=False)]
