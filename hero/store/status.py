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
    #: The last linked event's chain value: record it elsewhere, with its
    #: position, to detect a truncated store.
    head: bytes | None = None
    #: The position of the last linked event.
    head_position: int | None = None
    #: Events after the head, sealed and waiting to be linked (PostgreSQL
    #: links after the commit; with async projections, ``hero_project`` does).
    unlinked: int = 0
    #: Followers that hero_rebuild is rebuilding (it did not finish yet).
    rebuilding: list[str] = field(default_factory=list)


def store_status() -> StoreStatus:
    """Count the store's events and snapshots, and where each follower is."""
    # Lazy: the store is importable before Django has loaded the models.
    from hero.models import StoredEvent, StoredSnapshot

    alias = conf.HERO_DATABASE
    datastore = DjangoDatastore(alias)
    events = StoredEvent.objects.using(alias)
    # Read back from the end: the linked events are a prefix of the store.
    linked = events.filter(chain__isnull=False).order_by("-id")
    head_position, head = linked.values_list("id", "chain").first() or (None, None)
    after_head = events.filter(chain__isnull=True)
    if head_position is not None:
        after_head = after_head.filter(id__gt=head_position)
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
        head_position=head_position,
        unlinked=after_head.count(),
    )
