"""Rebuilding the views from the whole store, and verifying them against it."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hero.events import UserAchievement
from hero.ledger import get_ledger
from hero.projections import views as get_views
from hero.projections.base import UPSTREAM, Change, View, apply_views, read_changes
from hero.projections.holdings import HoldingsView
from hero.projections.ledger import KINDS, LedgerView


def store_changes(
    after: int, until: int | None, batch_size: int
) -> Iterator[list[Change]]:
    """The store's events after position ``after`` (up to ``until``), in batches."""
    position = after
    while batch := read_changes(position, batch_size, until):
        yield batch
        position = batch[-1].position


@dataclass
class RebuildResult:
    views: list[str]
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
    """Empty the named views and apply the whole store to them, in batches.

    Each batch commits its rows with the views' positions, so a rebuild that is
    killed part-way is resumed by running it again (with the same result as a
    clean rebuild). Other writers leave the views alone until it finishes.
    """
    selected = get_views(alias, names)
    resumed = [v.name for v in selected if not v.start_rebuild()]
    start = min(v.max_tracking_id(UPSTREAM) or 0 for v in selected)
    ledger = get_ledger()
    total = _count_events(alias)
    on_start(total, _count_events(alias, until=start))

    events = 0
    # What is alive now (Django, hero, the site) stays alive: leaving it out of
    # the collector's passes spares each batch a re-scan of it.
    gc.collect()
    gc.freeze()
    try:
        for changes in store_changes(start, None, batch_size):
            apply_views(selected, changes, rebuilding=True)
            events += len(changes)
            on_batch(len(changes))
    finally:
        gc.unfreeze()

    # The last events, written while the rebuild ran, are applied with writers
    # held off; removing the markers then hands the views back to them.
    datastore = selected[0].datastore
    with datastore.transaction() as cursor:
        if datastore.vendor == "postgresql":
            cursor.execute(
                f"LOCK TABLE {ledger.recorder.events_table} IN EXCLUSIVE MODE"
            )
        position = min(v.max_tracking_id(UPSTREAM) or 0 for v in selected)
        for changes in store_changes(position, None, batch_size):
            apply_views(selected, changes, rebuilding=True)
            events += len(changes)
            on_batch(len(changes))
        for view in selected:
            view.finish_rebuild(cursor)
    return RebuildResult([v.name for v in selected], resumed, events)


def _count_events(alias: str, until: int | None = None) -> int:
    from hero.models import StoredEvent

    events = StoredEvent.objects.using(alias)
    if until is not None:
        events = events.filter(id__lte=until)
    return events.count()


@dataclass
class Verification:
    differences: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    behind: dict[str, int] = field(default_factory=dict)


def verify(alias: str, *, batch_size: int = 5000) -> Verification:
    """Replay the store and compare it with the read tables.

    Each view is compared with the store up to its own position, so a view
    that lags behind (async mode) is not reported as wrong, only as behind.
    """
    result = Verification()
    last = get_ledger().recorder.max_notification_id() or 0
    for view in get_views(alias):
        if view.is_rebuilding():
            result.differences.append(
                f"{view.name}: a rebuild is under way; run hero_rebuild"
            )
            continue
        position = view.max_tracking_id(UPSTREAM) or 0
        if position < last:
            result.behind[view.name] = last - position
        if isinstance(view, HoldingsView):
            _verify_holdings(view, position, batch_size, result)
        elif isinstance(view, LedgerView):
            _verify_ledger(view, position, batch_size, result)
    return result


def _verify_holdings(
    view: View, until: int, batch_size: int, result: Verification
) -> None:
    from django.contrib.auth import get_user_model

    from hero.models import AchievementCount, AchievementUnlocked

    alias = view.datastore.alias
    expected: dict[tuple[str, str], int] = {}
    expected_progress: dict[tuple[str, str], tuple[int, int]] = {}
    for changes in store_changes(0, until, batch_size):
        for change in changes:
            event = change.event
            key = (getattr(event, "user_pk", ""), getattr(event, "achievement_id", ""))
            if isinstance(
                event, (UserAchievement.Unlocked, UserAchievement.LevelUpgraded)
            ):
                expected[key] = event.level
            elif isinstance(event, UserAchievement.Revoked):
                expected.pop(key, None)
                expected_progress.pop(key, None)
            elif isinstance(event, UserAchievement.Progressed):
                expected_progress[key] = (event.steps, event.total)
    users = {
        str(pk)
        for pk in get_user_model()
        ._default_manager.db_manager(alias)
        .values_list("pk", flat=True)
    }
    expected = {key: level for key, level in expected.items() if key[0] in users}
    expected_progress = {k: v for k, v in expected_progress.items() if k[0] in users}

    actual: dict[tuple[str, str], int] = {}
    rows = AchievementUnlocked.objects.using(alias).values_list(
        "user_id", "achievement_id", "level"
    )
    for user_pk, achievement_id, level in rows.iterator(chunk_size=batch_size):
        actual[(str(user_pk), achievement_id)] = level
    for key in sorted(expected.keys() - actual.keys()):
        result.differences.append(
            f"holdings: missing row: user {key[0]} holds {key[1]!r} at level {expected[key]}"
        )
    for key in sorted(actual.keys() - expected.keys()):
        result.differences.append(
            f"holdings: extra row: user {key[0]}, {key[1]!r} at level {actual[key]}, "
            "which the store does not record"
        )
    for key in sorted(expected.keys() & actual.keys()):
        if expected[key] != actual[key]:
            result.differences.append(
                f"holdings: wrong level: user {key[0]}, {key[1]!r} is at level "
                f"{actual[key]}, the store says {expected[key]}"
            )
    expected_counts = Counter((a, level) for (_, a), level in expected.items())
    actual_counts = {
        (a, level): n
        for a, level, n in AchievementCount.objects.using(alias).values_list(
            "achievement_id", "level", "holders"
        )
        if n
    }
    for key in sorted(set(expected_counts) | set(actual_counts)):
        if expected_counts.get(key, 0) != actual_counts.get(key, 0):
            result.differences.append(
                f"holdings: wrong count: {key[0]!r} level {key[1]} has "
                f"{actual_counts.get(key, 0)} holders, the store says {expected_counts.get(key, 0)}"
            )
    from hero.models import AchievementProgress

    actual_progress = {
        (str(u), a): (steps, total)
        for u, a, steps, total in AchievementProgress.objects.using(alias).values_list(
            "user_id", "achievement_id", "steps", "total"
        )
    }
    for key in sorted(set(expected_progress) | set(actual_progress)):
        if expected_progress.get(key) != actual_progress.get(key):
            result.differences.append(
                f"holdings: wrong progress: user {key[0]}, {key[1]!r} shows "
                f"{actual_progress.get(key)}, the store says {expected_progress.get(key)}"
            )
    result.checked["holdings"] = len(expected)


def _verify_ledger(
    view: View, until: int, batch_size: int, result: Verification
) -> None:
    from hero.models import LedgerEntry

    entries = LedgerEntry.objects.using(view.datastore.alias)
    previous = 0
    checked = 0
    for changes in store_changes(0, until, batch_size):
        expected = {
            c.position: KINDS[type(c.event)] for c in changes if type(c.event) in KINDS
        }
        actual = dict(
            entries.filter(
                position__gt=previous, position__lte=changes[-1].position
            ).values_list("position", "kind")
        )
        _compare_ledger(expected, actual, result)
        checked += len(expected)
        previous = changes[-1].position
    extra = entries.filter(position__gt=previous).values_list("position", "kind")
    _compare_ledger({}, dict(extra), result)
    result.checked["ledger"] = checked


def _compare_ledger(
    expected: dict[int, str], actual: dict[int, str], result: Verification
) -> None:
    for position in sorted(expected.keys() - actual.keys()):
        result.differences.append(
            f"ledger: missing entry at position {position} ({expected[position]})"
        )
    for position in sorted(actual.keys() - expected.keys()):
        result.differences.append(
            f"ledger: extra entry at position {position} ({actual[position]}), "
            "which the store does not record"
        )
    for position in sorted(expected.keys() & actual.keys()):
        if expected[position] != actual[position]:
            result.differences.append(
                f"ledger: entry at position {position} says {actual[position]}, "
                f"the store says {expected[position]}"
            )
