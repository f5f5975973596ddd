"""PostgreSQL scale-out: a count's changes are settled at COMMIT.

``hero_achievement_count_change`` holds the changes in holders that a
transaction made; on PostgreSQL a constraint trigger deferred to ``COMMIT``
(``hero_settle_count``) moves each into ``hero_achievement_count``, so a
popular achievement's count row is locked for the commit alone. On the other
backends the table stays empty: their writers update the counts directly.
"""

from django.db import migrations, models


class PostgreSQLOnly(migrations.RunSQL):
    """SQL that runs on PostgreSQL and does nothing elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


SETTLE_COUNT = """
CREATE FUNCTION hero_settle_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only a change still pending: one deleted meanwhile (a rebuild emptying
    -- the holdings in the same transaction) is not added.
    DELETE FROM hero_achievement_count_change WHERE id = NEW.id;
    IF FOUND THEN
        INSERT INTO hero_achievement_count AS c (achievement_id, level, holders)
        VALUES (NEW.achievement_id, NEW.level, NEW.holders)
        ON CONFLICT (achievement_id, level)
        DO UPDATE SET holders = c.holders + EXCLUDED.holders;
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER hero_settle_count
    AFTER INSERT ON hero_achievement_count_change
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION hero_settle_count();
"""

UNSETTLE_COUNT = """
DROP TRIGGER hero_settle_count ON hero_achievement_count_change;
DROP FUNCTION hero_settle_count();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("hero", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="AchievementCountChange",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("achievement_id", models.CharField(max_length=255)),
                ("level", models.PositiveSmallIntegerField()),
                ("holders", models.BigIntegerField()),
            ],
            options={
                "db_table": "hero_achievement_count_change",
                "default_permissions": (),
            },
        ),
        PostgreSQLOnly(SETTLE_COUNT, UNSETTLE_COUNT),
    ]
