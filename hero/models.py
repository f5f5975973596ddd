"""Tables of hero.

The event store's tables (:class:`StoredEvent`, :class:`StoredSnapshot`,
:class:`TrackingPosition`) are written only by :mod:`hero.persistence`.
"""

from __future__ import annotations

from django.db import models


class StoredEventBase(models.Model):
    """Columns of one stored domain event, as eventsourcing records it."""

    originator_id = models.UUIDField(help_text="Id of the aggregate the event belongs to.")
    originator_version = models.BigIntegerField(
        help_text="Position of the event in its aggregate's sequence."
    )
    topic = models.TextField(help_text="Topic of the event's class.")
    state = models.BinaryField(help_text="The event's serialised state.")

    class Meta:
        abstract = True


class StoredEvent(StoredEventBase):
    """One domain event; ``id`` is its position in the store (notification id)."""

    id = models.BigAutoField(primary_key=True)

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


class TrackingPosition(models.Model):
    """How far a projection (or other follower) has processed the store."""

    application_name = models.CharField(max_length=255, primary_key=True)
    notification_id = models.BigIntegerField()

    class Meta:
        db_table = "hero_tracking"
        verbose_name = "tracking position"

    def __str__(self) -> str:
        return f"{self.application_name} @ {self.notification_id}"
