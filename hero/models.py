"""Tables of hero.

The event store's tables (:class:`StoredEvent`, :class:`StoredSnapshot`,
:class:`TrackingPosition`, :class:`OrderingLock`) are written only by the event
store, :mod:`hero.store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models

from hero.queries import AchievementQuerySet, AchievementUnlockedQuerySet

if TYPE_CHECKING:
    from django.db.models.expressions import Combinable

    # The stubs' fields take the types they are set from and read as; Django's
    # own classes take no type arguments at runtime.
    _BigAutoField = models.BigAutoField[int | str | Combinable, int]
    _BigIntegerField = models.BigIntegerField[float | int | str | Combinable, int]
else:
    _BigAutoField = models.BigAutoField
    _BigIntegerField = models.BigIntegerField


class RowIdAutoField(_BigAutoField):
    """An auto-incrementing id that, on SQLite, is the table's plain rowid.

    Django declares SQLite ids ``AUTOINCREMENT``, which keeps a counter in
    ``sqlite_sequence``: one more page written by every insert. Without it
    SQLite gives each new row the largest id plus one, so an id can come back
    only if the row holding the largest id is deleted (events never are; a
    rolled-back insert's id was never seen). Other databases are unchanged.
    """

    def db_type_suffix(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return None
        return super().db_type_suffix(connection)


class StoredEventBase(models.Model):
    """Columns of one stored domain event, as eventsourcing records it."""

    originator_id = models.UUIDField(
        help_text="Id of the aggregate the event belongs to."
    )
    originator_version = models.BigIntegerField(
        help_text="Position of the event in its aggregate's sequence."
    )
    topic = models.TextField(help_text="Topic of the event's class.")
    state = models.BinaryField(help_text="The event's serialised state.")

    class Meta:
        abstract = True


class StoredEvent(StoredEventBase):
    """One domain event; ``id`` is its position in the store (notification id).

    ``chain`` links it to the event before it (see ``hero.store.chain.link``).
    """

    id = RowIdAutoField(primary_key=True)
    chain = models.BinaryField(
        null=True,
        help_text="HMAC-SHA-256, keyed with the site's chain key, over the "
        "previous event's chain and this event.",
    )

    class Meta:
        db_table = "hero_stored_event"
        verbose_name = "stored event"
        constraints = [
            models.UniqueConstraint(
                fields=["originator_id", "originator_version"],
                name="hero_stored_event_unique_version",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.originator_id} v{self.originator_version}"


class StoredSnapshot(StoredEventBase):
    """A snapshot of an aggregate's state at one of its versions."""

    id = models.BigAutoField(primary_key=True)

    class Meta:
        db_table = "hero_stored_snapshot"
        verbose_name = "stored snapshot"
        constraints = [
            models.UniqueConstraint(
                fields=["originator_id", "originator_version"],
                name="hero_stored_snapshot_unique_version",
            )
        ]

    def __str__(self) -> str:
        return f"snapshot of {self.originator_id} at v{self.originator_version}"


class OrderingLock(models.Model):
    """The row MariaDB and MySQL writers lock to append events one transaction
    at a time (:mod:`hero.store.ordering`); unused elsewhere."""

    id = models.PositiveSmallIntegerField(primary_key=True)

    class Meta:
        db_table = "hero_ordering_lock"

    def __str__(self) -> str:
        return f"ordering lock {self.id}"


class TrackingPosition(models.Model):
    """How far a projection (or other follower) has processed the store."""

    application_name = models.CharField(max_length=255, primary_key=True)
    notification_id = models.BigIntegerField()

    class Meta:
        db_table = "hero_tracking"
        verbose_name = "tracking position"

    def __str__(self) -> str:
        return f"{self.application_name} @ {self.notification_id}"


class Achievement(models.Model):
    """The catalog: every achievement the code defines (or once defined).

    Kept in step with the registered classes on ``migrate`` and by
    ``manage.py hero_sync``. One removed from the code stays, marked retired, so
    that old awards still resolve.
    """

    id = models.CharField(primary_key=True, max_length=255)
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    secret = models.BooleanField(default=False)
    invisible = models.BooleanField(default=False)
    image_locked = models.CharField(max_length=255, blank=True)
    image_unlocked = models.CharField(max_length=255, blank=True)
    image_secret = models.CharField(max_length=255, blank=True)
    steps = models.PositiveIntegerField(
        null=True, blank=True, help_text="Steps to complete it, if it counts progress."
    )
    retired = models.BooleanField(
        default=False, help_text="No longer defined in the code."
    )

    objects = AchievementQuerySet.as_manager()

    class Meta:
        db_table = "hero_achievement"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title or self.id


class AchievementUnlocked(models.Model):
    """One achievement a user currently holds, at its current level.

    Also what an achievement's ``unlock()`` returns: ``AchievementUnlocked(level=N)``.
    """

    id = RowIdAutoField(primary_key=True)
    # No index of their own: the unique constraint (user, achievement) and the
    # index (achievement, level) serve lookups by either column.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="achievements_unlocked",
        db_index=False,
    )
    achievement = models.ForeignKey(
        Achievement, on_delete=models.PROTECT, related_name="holdings", db_index=False
    )
    level = models.PositiveSmallIntegerField()
    unlocked_at = models.DateTimeField(help_text="When the user first unlocked it.")
    updated_at = models.DateTimeField(help_text="When its level last changed.")

    objects = AchievementUnlockedQuerySet.as_manager()

    class Meta:
        db_table = "hero_achievement_unlocked"
        verbose_name = "unlocked achievement"
        permissions = [("revoke_achievement", "Can revoke achievements")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "achievement"], name="hero_unlocked_once_per_user"
            )
        ]
        indexes = [models.Index(fields=["achievement", "level"])]

    def __str__(self) -> str:
        return f"{self.achievement_id} level {self.level} for user {self.user_id}"


class AchievementCount(models.Model):
    """How many users currently hold an achievement at exactly one level.

    Rarity (the share of users holding it at or above a level) is read from
    these few rows, never by counting :class:`AchievementUnlocked`.
    """

    id = RowIdAutoField(primary_key=True)
    achievement = models.ForeignKey(
        Achievement, on_delete=models.CASCADE, related_name="counts", db_index=False
    )  # the unique constraint (achievement, level) indexes it
    level = models.PositiveSmallIntegerField()
    holders = models.BigIntegerField(default=0)

    class Meta:
        db_table = "hero_achievement_count"
        constraints = [
            models.UniqueConstraint(
                fields=["achievement", "level"], name="hero_count_per_level"
            )
        ]

    def __str__(self) -> str:
        return f"{self.achievement_id} level {self.level}: {self.holders}"


class PositionField(_BigIntegerField):
    """A store position as primary key. On SQLite it is declared ``integer``, so
    that it is the table's own rowid rather than an index beside it."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return "integer"
        return super().db_type(connection)


class LedgerEntry(models.Model):
    """One row per event in the store, for audits and the admin.

    References to users and achievements are kept without database
    constraints: the ledger keeps entries of users deleted since.
    """

    class Kind(models.TextChoices):
        UNLOCKED = "unlocked"
        UPGRADED = "upgraded"
        REVOKED = "revoked"
        PROGRESSED = "progressed"
        TRIGGERED = "triggered"

    position = PositionField(
        primary_key=True, help_text="The event's position (id) in the store."
    )
    # Indexed by (user, position) below; by achievement only through the
    # position order (each index is one more write per event).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    achievement = models.ForeignKey(
        Achievement,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        related_name="+",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    level = models.PositiveSmallIntegerField(null=True)
    previous_level = models.PositiveSmallIntegerField(null=True)
    trigger = models.CharField(max_length=255, blank=True)
    state = models.JSONField(default=dict)
    steps = models.PositiveIntegerField(null=True, help_text="Progress: steps reached.")
    actor = models.CharField(max_length=255, blank=True, help_text="Who revoked it.")
    reason = models.TextField(blank=True, help_text="Why it was revoked.")
    occurred_at = models.DateTimeField(
        help_text="When it took effect (for a backfilled award, the original time)."
    )
    recorded_at = models.DateTimeField(help_text="When the event was recorded.")

    class Meta:
        db_table = "hero_ledger_entry"
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger"
        ordering = ["position"]
        indexes = [models.Index(fields=["user", "position"])]

    def __str__(self) -> str:
        return f"#{self.position} {self.kind} {self.achievement_id or ''}".strip()


class AchievementProgress(models.Model):
    """A user's progress toward an achievement that has ``steps``.

    Also what an achievement's ``unlock()`` returns to report progress:
    ``AchievementProgress(steps=k)``.
    """

    id = RowIdAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="achievements_progress",
        db_index=False,  # the unique constraint (user, achievement) indexes it
    )
    achievement = models.ForeignKey(
        Achievement, on_delete=models.PROTECT, related_name="progress"
    )
    steps = models.PositiveIntegerField()
    total = models.PositiveIntegerField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "hero_achievement_progress"
        verbose_name = "achievement progress"
        verbose_name_plural = "achievement progress"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "achievement"], name="hero_progress_once_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.achievement_id}: {self.steps} of {self.total} for user {self.user_id}"

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.steps / self.total) if self.total else 0.0


class NoticeCursor(models.Model):
    """How far a user has seen the notices of their unlocks (a store position).

    Not a projection: it records what the user did (marked notices as seen).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="hero_notice_cursor",
    )
    seen_position = models.BigIntegerField(default=0)

    class Meta:
        db_table = "hero_notice_cursor"

    def __str__(self) -> str:
        return f"user {self.user_id} has seen up to {self.seen_position}"
