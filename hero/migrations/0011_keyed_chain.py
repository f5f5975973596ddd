from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import migrations, models

if TYPE_CHECKING:
    from django.apps.registry import Apps
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def key_the_chain(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Link the events stored with the unkeyed chain again, with the site's key
    (checking every old link first: a broken chain stops the migration)."""
    from hero.store.chain import rekey

    rekey(schema_editor.connection.alias, unkeyed=True)


class Migration(migrations.Migration):
    dependencies = [
        ("hero", "0010_ordering_lock"),
    ]

    operations = [
        migrations.AlterField(
            model_name="storedevent",
            name="chain",
            field=models.BinaryField(
                help_text="HMAC-SHA-256, keyed with the site's chain key, over the "
                "previous event's chain and this event.",
                null=True,
            ),
        ),
        migrations.RunPython(key_the_chain, migrations.RunPython.noop),
    ]
