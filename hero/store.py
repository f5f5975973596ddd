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
    #: The last event's chain value: record it elsewhere to detect a truncated store.
    head: bytes | None = None
    #: Followers that hero_rebuild is rebuilding (it did not finish yet).
    rebuilding: list[str] = field(default_factory=list)


def store_status() -> StoreStatus:
    """Count the store's events and snapshots, and where each follower is."""
    from hero.models import StoredEvent, StoredSnapshot, TrackingPosition
    from hero.projections.base import CURRENT

    alias = conf.HERO_DATABASE
    events = StoredEvent.objects.using(alias)
    head = events.order_by("-id").values_list("chain", flat=True).first()
    # Read before the positions: a view found current has applied at least this.
    last_position = events.aggregate(last=Max("id"))["last"]
    positions = TrackingPosition.objects.using(alias).values_list(
        "application_name", "notification_id"
    )
    tracking: dict[str, int] = {}
    rebuilding: list[str] = []
    for name, position in positions:
        if name.endswith("#rebuild"):
            rebuilding.append(name.removesuffix("#rebuild"))
        else:
            tracking[name] = (last_position or 0) if position == CURRENT else position
    return StoreStatus(
        alias=alias,
        vendor=connections[alias].vendor,
        events=events.count(),
        last_position=last_position,
        snapshots=StoredSnapshot.objects.using(alias).count(),
        tracking=tracking,
        rebuilding=sorted(rebuilding),
        head=bytes(head) if head is not None else None,
    )


@dataclass(frozen=True)
class ChainCheck:
    """The result of checking the store's hash chain."""

    checked: int
    broken_at: int | None = None
    head: bytes | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(batch_size: int = 5000) -> ChainCheck:
    """Recompute the chain over every stored event, in store order, and report
    the first position whose stored link does not match (the event there, or
    one before it, was edited, deleted or moved)."""
    from eventsourcing.persistence import StoredEvent as Record

    from hero.models import StoredEvent
    from hero.persistence import GENESIS, link

    events = StoredEvent.objects.using(conf.HERO_DATABASE).order_by("id")
    previous, last, checked = GENESIS, 0, 0
    while True:
        rows = list(
            events.filter(id__gt=last).values_list(
                "id", "originator_id", "originator_version", "topic", "state", "chain"
            )[:batch_size]
        )
        if not rows:
            return ChainCheck(checked, head=previous if checked else None)
        for position, originator, version, topic, state, stored in rows:
            previous = link(previous, Record(originator, version, topic, bytes(state)))
            if stored is None or bytes(stored) != previous:
                return ChainCheck(checked, broken_at=position)
            checked += 1
        last = rows[-1][0]
