"""Forgetting users: each user's wrapped data key (``hero_user_key``), and the
ledger's personal columns (state, key, actor, reason) folded into one
``payload`` that holds them sealed.

Entries written before this migration keep their values, as plain JSON in
``payload``, until their user is forgotten; so do the events they came from
(see docs/guide/leaving.md).
"""

import json
from typing import Any

from django.db import migrations, models

PERSONAL = ("state", "key", "actor", "reason")


def fold_into_payload(apps: Any, schema_editor: Any) -> None:
    entries = apps.get_model("hero", "LedgerEntry").objects.using(
        schema_editor.connection.alias
    )
    changed = []
    for entry in entries.only("position", *PERSONAL).iterator(chunk_size=2000):
        values = {name: getattr(entry, name) for name in PERSONAL}
        values = {name: value for name, value in values.items() if value}
        if values:
            entry.payload = json.dumps(values, sort_keys=True, separators=(",", ":"))
            changed.append(entry)
        if len(changed) >= 2000:
            entries.bulk_update(changed, ["payload"])
            changed = []
    if changed:
        entries.bulk_update(changed, ["payload"])


def unfold_payload(apps: Any, schema_editor: Any) -> None:
    entries = apps.get_model("hero", "LedgerEntry").objects.using(
        schema_editor.connection.alias
    )
    changed = []
    for entry in entries.exclude(payload="").iterator(chunk_size=2000):
        if not entry.payload.startswith("{"):
            continue  # sealed: nothing to read back into plain columns
        values = json.loads(entry.payload)
        entry.state = values.get("state") or {}
        entry.key = values.get("key") or ""
        entry.actor = values.get("actor") or ""
        entry.reason = values.get("reason") or ""
        changed.append(entry)
    if changed:
        entries.bulk_update(changed, list(PERSONAL), batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [
        ("hero", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="UserKey",
            fields=[
                (
                    "user_pk",
                    models.CharField(
                        help_text="The user's pk, as events record it.",
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                        verbose_name="user pk",
                    ),
                ),
                ("wrapped", models.BinaryField(verbose_name="wrapped key")),
                ("created_at", models.DateTimeField(verbose_name="created at")),
            ],
            options={
                "verbose_name": "user key",
                "verbose_name_plural": "user keys",
                "db_table": "hero_user_key",
            },
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="payload",
            field=models.TextField(
                blank=True,
                help_text=(
                    "What the site passed for the user (state, key, actor, reason), "
                    "sealed under the user's key; empty when there was nothing, or "
                    "once the user was forgotten."
                ),
                verbose_name="payload",
            ),
        ),
        migrations.RunPython(fold_into_payload, unfold_payload, elidable=True),
        migrations.RemoveField(model_name="ledgerentry", name="actor"),
        migrations.RemoveField(model_name="ledgerentry", name="key"),
        migrations.RemoveField(model_name="ledgerentry", name="reason"),
        migrations.RemoveField(model_name="ledgerentry", name="state"),
        migrations.AlterField(
            model_name="ledgerentry",
            name="kind",
            field=models.CharField(
                choices=[
                    ("unlocked", "Unlocked"),
                    ("upgraded", "Upgraded"),
                    ("revoked", "Revoked"),
                    ("progressed", "Progressed"),
                    ("triggered", "Triggered"),
                    ("granted", "Granted"),
                    ("repeated", "Awarded again"),
                    ("forgotten", "Forgotten"),
                ],
                max_length=16,
                verbose_name="kind",
            ),
        ),
    ]
