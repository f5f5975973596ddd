"""Tables of hero.

The event store's tables (:class:`StoredEvent`, :class:`StoredSnapshot`,
:class:`TrackingPosition`, :class:`OrderingLock`) are written only by the event
store, :mod:`hero.store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from hero.queries import (
    AchievementCountQuerySet,
    AchievementQuerySet,
    AchievementUnlockedQuerySet,
)

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
        help_text=_("Id of the aggregate the event belongs to.")
    )
    originator_version = models.BigIntegerField(
        help_text=_("Position of the event in its aggregate's sequence.")
    )
    topic = models.TextField(help_text=_("Topic of the event's class."))
    state = models.BinaryField(help_text=_("The event's serialised state."))

    class Meta:
        abstract = True


class StoredEvent(StoredEventBase):
    """One domain event; ``id`` is its position in the store (notification id).

    ``chain`` links it to the event before it (see ``hero.store.chain.link``).
    """

    id = RowIdAutoField(primary_key=True)
    chain = models.BinaryField(
        null=True,
        help_text=_(
            "HMAC-SHA-256, keyed with the site's chain key, over the previous "
            "event's chain and this event."
        ),
    )
    seal = models.BinaryField(
        null=True,
        help_text=_(
            "Until the event is linked (PostgreSQL links after the commit): "
            "HMAC-SHA-256, keyed with the chain key, over its position and "
            "the event."
        ),
    )
    data_key = models.BinaryField(
        null=True,
        help_text=_(
            "The data key that seals what the site passed in this event and "
            "the aggregate's later ones, wrapped with a key derived from the "
            "chain key; emptied when the user is forgotten. Not part of the "
            "chain."
        ),
    )

    class Meta:
        db_table = "hero_stored_event"
        verbose_name = _("stored event")
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
        verbose_name = _("stored snapshot")
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
        verbose_name = _("tracking position")

    def __str__(self) -> str:
        return f"{self.application_name} @ {self.notification_id}"


class Achievement(models.Model):
    """The catalog: every achievement the code defines (or once defined).

    Kept in step with the registered classes on ``migrate`` and by
    ``manage.py hero_sync``. One removed from the code stays, marked retired, so
    that old awards still resolve.
    """

    id = models.CharField(_("id"), primary_key=True, max_length=255)
    title = models.CharField(_("title"), max_length=255)
    description = models.TextField(_("description"), blank=True)
    secret = models.BooleanField(_("secret"), default=False)
    invisible = models.BooleanField(_("invisible"), default=False)
    image_locked = models.CharField(_("image when locked"), max_length=255, blank=True)
    image_unlocked = models.CharField(
        _("image when unlocked"), max_length=255, blank=True
    )
    image_secret = models.CharField(_("image when secret"), max_length=255, blank=True)
    steps = models.PositiveIntegerField(
        _("steps"),
        null=True,
        blank=True,
        help_text=_("Steps to complete it, if it counts progress."),
    )
    retired = models.BooleanField(
        _("retired"), default=False, help_text=_("No longer defined in the code.")
    )

    objects = AchievementQuerySet.as_manager()

    class Meta:
        db_table = "hero_achievement"
        verbose_name = _("achievement")
        verbose_name_plural = _("achievements")
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title or self.id


class AchievementUnlocked(models.Model):
    """One achievement a user currently holds, at its current level, and how
    many times (a repeatable achievement is awarded once per key).

    Also what an achievement's ``unlock()`` returns: ``AchievementUnlocked(level=N)``,
    or ``AchievementUnlocked(level=N, key="answer:123")`` for a repeatable one.
    """

    id = RowIdAutoField(primary_key=True)
    # No index of their own: the unique constraint (user, achievement) and the
    # index (achievement, level) serve lookups by either column.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="achievements_unlocked",
        db_index=False,
        verbose_name=_("user"),
    )
    achievement = models.ForeignKey(
        Achievement,
        on_delete=models.PROTECT,
        related_name="holdings",
        db_index=False,
        verbose_name=_("achievement"),
    )
    level = models.PositiveSmallIntegerField(_("level"))
    unlocked_at = models.DateTimeField(
        _("unlocked at"), help_text=_("When the user first unlocked it.")
    )
    updated_at = models.DateTimeField(
        _("updated at"), help_text=_("When its level last changed.")
    )
    times = models.PositiveIntegerField(
        _("times"),
        default=1,
        help_text=_("How many awards the user holds (1 unless it is repeatable)."),
    )

    objects = AchievementUnlockedQuerySet.as_manager()

    class Meta:
        db_table = "hero_achievement_unlocked"
        verbose_name = _("unlocked achievement")
        verbose_name_plural = _("unlocked achievements")
        permissions = [
            ("revoke_achievement", _("Can revoke achievements")),
            ("grant_achievement", _("Can grant achievements")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "achievement"], name="hero_unlocked_once_per_user"
            )
        ]
        indexes = [models.Index(fields=["achievement", "level"])]

    def __str__(self) -> str:
        return gettext("%(achievement)s level %(level)s for user %(user)s") % {
            "achievement": self.achievement_id,
            "level": self.level,
            "user": self.user_id,
        }

    #: The award's key, in an answer of a repeatable achievement's ``unlock()``
    #: (not a column: a holding counts its awards in ``times``).
    _key: str | None = None

    @property
    def key(self) -> str | None:
        return self._key

    @key.setter
    def key(self, value: str | None) -> None:
        self._key = value


class AchievementCount(models.Model):
    """How many users currently hold an achievement at exactly one level.

    Rarity (the share of users holding it at or above a level) is read from
    these few rows, never by counting :class:`AchievementUnlocked`.
    """

    id = RowIdAutoField(primary_key=True)
    achievement = models.ForeignKey(
        Achievement,
        on_delete=models.CASCADE,
        related_name="counts",
        db_index=False,  # the unique constraint (achievement, level) indexes it
        verbose_name=_("achievement"),
    )
    level = models.PositiveSmallIntegerField(_("level"))
    holders = models.BigIntegerField(_("holders"), default=0)

    objects = AchievementCountQuerySet.as_manager()

    class Meta:
        db_table = "hero_achievement_count"
        verbose_name = _("achievement count")
        verbose_name_plural = _("achievement counts")
        constraints = [
            models.UniqueConstraint(
                fields=["achievement", "level"], name="hero_count_per_level"
            )
        ]

    def __str__(self) -> str:
        return gettext("%(achievement)s level %(level)s: %(holders)s") % {
            "achievement": self.achievement_id,
            "level": self.level,
            "holders": self.holders,
        }


class AchievementCountChange(models.Model):
    """A change in the holders of an :class:`AchievementCount` that its
    transaction has not settled yet (PostgreSQL only).

    On PostgreSQL the holdings projection records a change here instead of
    updating the count row, and a trigger deferred to ``COMMIT`` adds it to the
    count and deletes it: the count's row is locked for the commit only, not
    for the rest of the writer's transaction, so that awards of one popular
    achievement do not take turns. Outside a transaction that awards, the
    table is empty; inside one, ``AchievementCount.objects.holders()`` adds
    the transaction's own changes.
    """

    id = models.BigAutoField(primary_key=True)
    # No foreign key: the catalog row exists (the count's own key checks it at
    # COMMIT), and a key here would lock it for the writer's whole transaction.
    achievement_id = models.CharField(max_length=255)
    level = models.PositiveSmallIntegerField()
    holders = models.BigIntegerField()

    class Meta:
        db_table = "hero_achievement_count_change"
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.achievement_id} level {self.level}: {self.holders:+d}"


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
    constraints: the ledger keeps entries of users deleted since. What the
    site passed for the user is kept only sealed, in ``payload``
    (:func:`hero.sealing.open_payload` opens it).
    """

    class Kind(models.TextChoices):
        UNLOCKED = "unlocked", _("Unlocked")
        UPGRADED = "upgraded", _("Upgraded")
        REVOKED = "revoked", _("Revoked")
        PROGRESSED = "progressed", _("Progressed")
        TRIGGERED = "triggered", _("Triggered")
        GRANTED = "granted", _("Granted")
        REPEATED = "repeated", _("Awarded again")
        FORGOTTEN = "forgotten", _("Forgotten")

    position = PositionField(
        _("position"),
        primary_key=True,
        help_text=_("The event's position (id) in the store."),
    )
    # Indexed by (user, position) below; by achievement only through the
    # position order (each index is one more write per event).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name=_("user"),
    )
    achievement = models.ForeignKey(
        Achievement,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        related_name="+",
        verbose_name=_("achievement"),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    level = models.PositiveSmallIntegerField(_("level"), null=True)
    previous_level = models.PositiveSmallIntegerField(_("previous level"), null=True)
    trigger = models.CharField(_("trigger"), max_length=255, blank=True)
    steps = models.PositiveIntegerField(
        _("steps"), null=True, help_text=_("Progress: steps reached.")
    )
    payload = models.TextField(
        _("payload"),
        blank=True,
        help_text=_(
            "What the site passed for the user (state, key, actor, reason), "
            "sealed under the data key of the user's achievement; empty when "
            "there was nothing, or once the user was forgotten."
        ),
    )
    occurred_at = models.DateTimeField(
        _("occurred at"),
        help_text=_("When it took effect (for a backfilled award, the original time)."),
    )
    recorded_at = models.DateTimeField(
        _("recorded at"), help_text=_("When the event was recorded.")
    )

    class Meta:
        db_table = "hero_ledger_entry"
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger")
        ordering = ["position"]
        indexes = [models.Index(fields=["user", "position"])]

    def __str__(self) -> str:
        kind = self.get_kind_display()
        return f"#{self.position} {kind} {self.achievement_id or ''}".strip()

    def personal_values(self) -> dict[str, Any]:
        """What the site passed for the user in this entry, opened: ``state``,
        ``key``, ``actor`` and ``reason`` (empty when there was none, or the
        user was forgotten). Reads the key: one query per call."""
        # Lazy: hero.sealing reads the store's settings, not needed to declare tables.
        from hero.sealing import open_payload

        values = open_payload(str(self.user_id), self.payload, position=self.position)
        values = values or {}
        return {
            "state": values.get("state") or {},
            "key": values.get("key") or "",
            "actor": values.get("actor") or "",
            "reason": values.get("reason") or "",
        }


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
        verbose_name=_("user"),
    )
    achievement = models.ForeignKey(
        Achievement,
        on_delete=models.PROTECT,
        related_name="progress",
        verbose_name=_("achievement"),
    )
    steps = models.PositiveIntegerField(_("steps"))
    total = models.PositiveIntegerField(_("total"))
    updated_at = models.DateTimeField(_("updated at"))

    class Meta:
        db_table = "hero_achievement_progress"
        verbose_name = _("achievement progress")
        verbose_name_plural = _("achievement progress")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "achievement"], name="hero_progress_once_per_user"
            )
        ]

    def __str__(self) -> str:
        return gettext("%(achievement)s: %(steps)s of %(total)s for user %(user)s") % {
            "achievement": self.achievement_id,
            "steps": self.steps,
            "total": self.total,
            "user": self.user_id,
        }

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
        verbose_name=_("user"),
    )
    seen_position = models.BigIntegerField(_("seen up to position"), default=0)

    class Meta:
        db_table = "hero_notice_cursor"
        verbose_name = _("notice cursor")

    def __str__(self) -> str:
        return gettext("user %(user)s has seen up to %(position)s") % {
            "user": self.user_id,
            "position": self.seen_position,
        }


class UserKey(models.Model):
    """One user's data key, which sealed what the site passed for the user in
    events stored before each aggregate's key lived with its events
    (``StoredEvent.data_key``); nothing makes new ones.

    Stored wrapped (encrypted with a key derived from the chain key, which the
    database does not hold). Deleting the row, which forgetting the user does,
    erases what it sealed: see :mod:`hero.sealing`.
    """

    user_pk = models.CharField(
        _("user pk"),
        max_length=255,
        primary_key=True,
        help_text=_("The user's pk, as events record it."),
    )
    wrapped = models.BinaryField(_("wrapped key"))
    created_at = models.DateTimeField(_("created at"))

    class Meta:
        db_table = "hero_user_key"
        verbose_name = _("user key")
        verbose_name_plural = _("user keys")

    def __str__(self) -> str:
        return f"key of user {self.user_pk}"
