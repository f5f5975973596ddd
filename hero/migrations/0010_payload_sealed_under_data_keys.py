"""The ledger's ``payload`` help text: since migration 0008 what the site
passed is sealed under the data key of the user's achievement (or trigger
log), not under a key of the user's. Nothing changes in the database."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hero", "0009_unlinked_without_horizon"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ledgerentry",
            name="payload",
            field=models.TextField(
                blank=True,
                help_text="What the site passed for the user (state, key, actor, reason), sealed under the data key of the user's achievement; empty when there was nothing, or once the user was forgotten.",
                verbose_name="payload",
            ),
        ),
    ]
