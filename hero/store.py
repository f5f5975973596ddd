"""Reads about the event store as a whole (its size, its followers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connections
from django.db.models import Max

from hero.conf import conf


@dataclass(frozen=True)
class StoreStatus:
    alias: str
    vendor: str
    events: int
    last_position: int | None
    snapshots: int
    tracking: dict[str, int] = field(default_factory=dict)


def store_status() -> StoreStatus:
    """Count the store's events and snapshots, and where each follower is."""
    from hero.models import StoredEvent, StoredSnapshot, TrackingPosition

    alias = conf.HERO_DATABASE
    events = StoredEvent.objects.using(alias)
    return StoreStatus(
        alias=alias,
        vendor=connections[alias].vendor,
        events=events.count(),
        last_position=events.aggregate(last=Max("id"))["last"],
        snapshots=StoredSnapshot.objects.using(alias).count(),
        tracking=dict(
            TrackingPosition.objects.using(alias)
            .exclude(application_name__startswith="__")
            .values_list("application_name", "notification_id")
        ),
    )
