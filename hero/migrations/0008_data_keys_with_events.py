"""Each aggregate's data key in a column of the event it was made with.

What a site passes for a user is sealed under a key of the event's aggregate,
stored wrapped in ``hero_stored_event.data_key`` by the event's own INSERT, not
in a row of ``hero_user_key`` made by a statement of its own (see
:mod:`hero.sealing`). The column is nullable and has no default: every backend
adds it without rewriting the table. Events sealed before keep their users'
keys in ``hero_user_key``, which stays.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hero", "0007_plans_kept")]

    operations = [
        migrations.AddField(
            model_name="storedevent",
            name="data_key",
            field=models.BinaryField(
                help_text=(
                    "The data key that seals what the site passed in this event "
                    "and the aggregate's later ones, wrapped with a key derived "
                    "from the chain key; emptied when the user is forgotten. Not "
                    "part of the chain."
                ),
                null=True,
            ),
        ),
    ]
