"""Reads about the event store as a whole: its size, its head and its followers."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Max

from hero.conf import conf
from hero.store.positions import Positions
from hero.store.transactions import DjangoDatastore


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
    # Lazy: the store is importable before Django has loaded the models.
    from hero.models import StoredEvent, StoredSnapshot

    alias = conf.HERO_DATABASE
    datastore = DjangoDatastore(alias)
    events = StoredEvent.objects.using(alias)
    head = events.order_by("-id").values_list("chain", flat=True).first()
    # Read before the positions: a follower found current has applied at least this.
    last_position = events.aggregate(last=Max("id"))["last"]
    followers = Positions(datastore).report(last_position)
    return StoreStatus(
        alias=alias,
        vendor=datastore.vendor,
        events=events.count(),
        last_position=last_position,
        snapshots=StoredSnapshot.objects.using(alias).count(),
        tracking=followers.tracking,
        rebuilding=followers.rebuilding,
        head=bytes(head) if head is not None else None,
    )
