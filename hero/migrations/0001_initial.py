"""hero's tables, as one migration: the schema of the 0.1 release.

On SQLite the ids of the events, holdings, counts and progress are plain rowids
(``RowIdAutoField``: no ``AUTOINCREMENT``), and so is the ledger's position
(``PositionField``); ``hero_ordering_lock`` is the row MariaDB and MySQL lock to
order writers. The schema each backend gets is kept in ``tests/snapshots``.
"""

import django.db.models.deletion
import hero.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="TrackingPosition",
            fields=[
                (
                    "application_name",
                    models.CharField(max_length=255, primary_key=True, serialize=False),
                ),
                ("notification_id", models.BigIntegerField()),
            ],
            options={
                "verbose_name": "tracking position",
                "db_table": "hero_tracking",
            },
        ),
        migrations.CreateModel(
            name="StoredEvent",
            fields=[
                (
                    "originator_id",
                    models.UUIDField(
                        help_text="Id of the aggregate the event belongs to."
                    ),
                ),
                (
                    "originator_version",
                    models.BigIntegerField(
                        help_text="Position of the event in its aggregate's sequence."
                    ),
                ),
                ("topic", models.TextField(help_text="Topic of the event's class.")),
                (
                    "state",
                    models.BinaryField(help_text="The event's serialised state."),
                ),
                ("id", hero.models.RowIdAutoField(primary_key=True, serialize=False)),
                (
                    "chain",
                    models.BinaryField(
                        help_text="HMAC-SHA-256, keyed with the site's chain key, over the previous event's chain and this event.",
                        null=True,
                    ),
                ),
            ],
            options={
                "verbose_name": "stored event",
                "db_table": "hero_stored_event",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("originator_id", "originator_version"),
                        name="hero_stored_event_unique_version",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="StoredSnapshot",
            fields=[
                (
                    "originator_id",
                    models.UUIDField(
                        help_text="Id of the aggregate the event belongs to."
                    ),
                ),
                (
                    "originator_version",
                    models.BigIntegerField(
                        help_text="Position of the event in its aggregate's sequence."
                    ),
                ),
                ("topic", models.TextField(help_text="Topic of the event's class.")),
                (
                    "state",
                    models.BinaryField(help_text="The event's serialised state."),
                ),
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
            ],
            options={
                "verbose_name": "stored snapshot",
                "db_table": "hero_stored_snapshot",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("originator_id", "originator_version"),
                        name="hero_stored_snapshot_unique_version",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="OrderingLock",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(primary_key=True, serialize=False),
                ),
            ],
            options={
                "db_table": "hero_ordering_lock",
            },
        ),
        migrations.CreateModel(
            name="Achievement",
            fields=[
                (
                    "id",
                    models.CharField(
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                        verbose_name="id",
                    ),
                ),
                ("title", models.CharField(max_length=255, verbose_name="title")),
                (
                    "description",
                    models.TextField(blank=True, verbose_name="description"),
                ),
                ("secret", models.BooleanField(default=False, verbose_name="secret")),
                (
                    "invisible",
                    models.BooleanField(default=False, verbose_name="invisible"),
                ),
                (
                    "image_locked",
                    models.CharField(
                        blank=True, max_length=255, verbose_name="image when locked"
                    ),
                ),
                (
                    "image_unlocked",
                    models.CharField(
                        blank=True, max_length=255, verbose_name="image when unlocked"
                    ),
                ),
                (
                    "image_secret",
                    models.CharField(
                        blank=True, max_length=255, verbose_name="image when secret"
                    ),
                ),
                (
                    "retired",
                    models.BooleanField(
                        default=False,
                        help_text="No longer defined in the code.",
                        verbose_name="retired",
                    ),
                ),
                (
                    "steps",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Steps to complete it, if it counts progress.",
                        null=True,
                        verbose_name="steps",
                    ),
                ),
            ],
            options={
                "db_table": "hero_achievement",
                "ordering": ["id"],
                "verbose_name": "achievement",
                "verbose_name_plural": "achievements",
            },
        ),
        migrations.CreateModel(
            name="AchievementUnlocked",
            fields=[
                ("id", hero.models.RowIdAutoField(primary_key=True, serialize=False)),
                ("level", models.PositiveSmallIntegerField(verbose_name="level")),
                (
                    "unlocked_at",
                    models.DateTimeField(
                        help_text="When the user first unlocked it.",
                        verbose_name="unlocked at",
                    ),
                ),
                (
                    "updated_at",
                    models.DateTimeField(
                        help_text="When its level last changed.",
                        verbose_name="updated at",
                    ),
                ),
                (
                    "achievement",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="holdings",
                        to="hero.achievement",
                        verbose_name="achievement",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="achievements_unlocked",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
                (
                    "times",
                    models.PositiveIntegerField(
                        default=1,
                        help_text="How many awards the user holds (1 unless it is repeatable).",
                        verbose_name="times",
                    ),
                ),
            ],
            options={
                "verbose_name": "unlocked achievement",
                "db_table": "hero_achievement_unlocked",
                "indexes": [
                    models.Index(
                        fields=["achievement", "level"],
                        name="hero_achiev_achieve_ab3058_idx",
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user", "achievement"),
                        name="hero_unlocked_once_per_user",
                    )
                ],
                "permissions": [
                    ("revoke_achievement", "Can revoke achievements"),
                    ("grant_achievement", "Can grant achievements"),
                ],
                "verbose_name_plural": "unlocked achievements",
            },
        ),
        migrations.CreateModel(
            name="AchievementCount",
            fields=[
                ("id", hero.models.RowIdAutoField(primary_key=True, serialize=False)),
                ("level", models.PositiveSmallIntegerField(verbose_name="level")),
                ("holders", models.BigIntegerField(default=0, verbose_name="holders")),
                (
                    "achievement",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="counts",
                        to="hero.achievement",
                        verbose_name="achievement",
                    ),
                ),
            ],
            options={
                "db_table": "hero_achievement_count",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("achievement", "level"), name="hero_count_per_level"
                    )
                ],
                "verbose_name": "achievement count",
                "verbose_name_plural": "achievement counts",
            },
        ),
        migrations.CreateModel(
            name="LedgerEntry",
            fields=[
                (
                    "position",
                    hero.models.PositionField(
                        help_text="The event's position (id) in the store.",
                        primary_key=True,
                        serialize=False,
                        verbose_name="position",
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("unlocked", "Unlocked"),
                            ("upgraded", "Upgraded"),
                            ("revoked", "Revoked"),
                            ("progressed", "Progressed"),
                            ("triggered", "Triggered"),
                            ("granted", "Granted"),
                            ("repeated", "Awarded again"),
                        ],
                        max_length=16,
                        verbose_name="kind",
                    ),
                ),
                (
                    "level",
                    models.PositiveSmallIntegerField(null=True, verbose_name="level"),
                ),
                (
                    "previous_level",
                    models.PositiveSmallIntegerField(
                        null=True, verbose_name="previous level"
                    ),
                ),
                (
                    "trigger",
                    models.CharField(
                        blank=True, max_length=255, verbose_name="trigger"
                    ),
                ),
                ("state", models.JSONField(default=dict, verbose_name="state")),
                (
                    "occurred_at",
                    models.DateTimeField(
                        help_text="When it took effect (for a backfilled award, the original time).",
                        verbose_name="occurred at",
                    ),
                ),
                (
                    "recorded_at",
                    models.DateTimeField(
                        help_text="When the event was recorded.",
                        verbose_name="recorded at",
                    ),
                ),
                (
                    "achievement",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="hero.achievement",
                        verbose_name="achievement",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
                (
                    "actor",
                    models.CharField(
                        blank=True,
                        help_text="Who revoked or granted it.",
                        max_length=255,
                        verbose_name="actor",
                    ),
                ),
                (
                    "reason",
                    models.TextField(
                        blank=True,
                        help_text="Why it was revoked or granted.",
                        verbose_name="reason",
                    ),
                ),
                (
                    "steps",
                    models.PositiveIntegerField(
                        help_text="Progress: steps reached.",
                        null=True,
                        verbose_name="steps",
                    ),
                ),
                (
                    "key",
                    models.CharField(
                        blank=True,
                        help_text="The award's key, of a repeatable achievement.",
                        max_length=255,
                        verbose_name="key",
                    ),
                ),
            ],
            options={
                "verbose_name": "ledger entry",
                "verbose_name_plural": "ledger",
                "db_table": "hero_ledger_entry",
                "ordering": ["position"],
                "indexes": [
                    models.Index(
                        fields=["user", "position"],
                        name="hero_ledger_user_id_351d7c_idx",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="AchievementProgress",
            fields=[
                ("id", hero.models.RowIdAutoField(primary_key=True, serialize=False)),
                ("steps", models.PositiveIntegerField(verbose_name="steps")),
                ("total", models.PositiveIntegerField(verbose_name="total")),
                ("updated_at", models.DateTimeField(verbose_name="updated at")),
                (
                    "achievement",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="progress",
                        to="hero.achievement",
                        verbose_name="achievement",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="achievements_progress",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
            ],
            options={
                "verbose_name": "achievement progress",
                "verbose_name_plural": "achievement progress",
                "db_table": "hero_achievement_progress",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user", "achievement"),
                        name="hero_progress_once_per_user",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="NoticeCursor",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="hero_notice_cursor",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
                (
                    "seen_position",
                    models.BigIntegerField(
                        default=0, verbose_name="seen up to position"
                    ),
                ),
            ],
            options={
                "db_table": "hero_notice_cursor",
                "verbose_name": "notice cursor",
            },
        ),
    ]
