"""Rebuilding read models from the whole store, resumably and beside live writers."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from hero.models import StoredEvent
from hero.projections.base import Row, apply_rows, read_rows
from hero.projections.inline import read_models
from hero.store.ordering import hold_ordering_lock
from hero.store.positions import UPSTREAM
from hero.store.postgres import pipelined


@dataclass
class RebuildResult:
    projections: list[str]
    resumed: list[str]
    events: int


def rebuild(
    alias: str,
    names: Sequence[str] | None = None,
    *,
    batch_size: int = 1000,
    on_start: Callable[[int, int], None] = lambda total, done: None,
    on_batch: Callable[[int], None] = lambda count: None,
) -> RebuildResult:
    """Empty the named read models and apply the whole store to them, in batches.

    Each batch commits its rows with the read models' positions, so a rebuild
    that is killed part-way is resumed by running it again (with the same result
    as a clean rebuild). Other writers leave them alone until it finishes.
    """
    selected = read_models(alias, names)
    resumed = [v.name for v in selected if not v.start_rebuild()]
    start = min(v.max_tracking_id(UPSTREAM) or 0 for v in selected)
    total = _count_events(alias)
    on_start(total, _count_events(alias, until=start))

    events = 0
    # What is alive now (Django, hero, the site) stays alive: leaving it out of
    # the collector's passes spares each batch a re-scan of it.
    gc.collect()
    gc.freeze()
    try:
        for rows in _batches(start, batch_size):
            apply_rows(selected, rows)
            events += len(rows)
            on_batch(len(rows))
    finally:
        gc.unfreeze()

    # The last events, written while the rebuild ran, are applied with writers
    # held off; removing the markers then hands the read models back to them.
    datastore = selected[0].datastore
    with datastore.transaction() as cursor:
        with pipelined(cursor):
            hold_ordering_lock(cursor)
        position = min(v.max_tracking_id(UPSTREAM) or 0 for v in selected)
        for rows in _batches(position, batch_size):
            apply_rows(selected, rows)
            events += len(rows)
            on_batch(len(rows))
        for model in selected:
            model.finish_rebuild(cursor)
    return RebuildResult([v.name for v in selected], resumed, events)


def _batches(after: int, batch_size: int) -> Iterator[list[Row]]:
    """The store's events after position ``after``, as stored, in batches."""
    while rows := read_rows(after, batch_size):
        yield rows
        after = rows[-1][0]


def _count_events(alias: str, until: int | None = None) -> int:
    events = StoredEvent.objects.using(alias)
    if until is not None:
        events = events.filter(id__lte=until)
    return events.count()
