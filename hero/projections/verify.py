"""Verifying the read models against the store they are projections of."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from django.contrib.auth import get_user_model

from hero.ledger import get_ledger
from hero.models import (
    AchievementCount,
    AchievementProgress,
    AchievementUnlocked,
    LedgerEntry,
)
from hero.projections.base import ReadModel, store_changes
from hero.projections.holdings import Holdings, HoldingsDelta
from hero.projections.inline import read_models
from hero.projections.ledger import KINDS, LedgerEntries
from hero.store.positions import UPSTREAM

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

K = TypeVar("K", bound="SupportsRichComparison")
V = TypeVar("V")


@dataclass
class Verification:
    differences: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    behind: dict[str, int] = field(default_factory=dict)


def verify(alias: str, *, batch_size: int = 5000) -> Verification:
    """Replay the store and compare it with the read tables.

    Each read model is compared with the store up to its own position, so one
    that lags behind (async mode) is not reported as wrong, only as behind.
    """
    result = Verification()
    models = read_models(alias)
    last = get_ledger().recorder.max_notification_id() or 0
    for model in models:
        if model.is_rebuilding():
            result.differences.append(
                f"{model.name}: a rebuild is under way; run hero_rebuild"
            )
            continue
        position = model.max_tracking_id(UPSTREAM) or 0
        if position < last:
            result.behind[model.name] = last - position
        if isinstance(model, Holdings):
            _verify_holdings(model, position, batch_size, result)
        elif isinstance(model, LedgerEntries):
            _verify_ledger(model, position, batch_size, result)
    return result


def _verify_holdings(
    model: ReadModel, until: int, batch_size: int, result: Verification
) -> None:
    alias = model.datastore.alias
    users = {
        str(pk)
        for pk in get_user_model()
        ._default_manager.db_manager(alias)
        .values_list("pk", flat=True)
    }
    # What the holdings projection writes, folded from the first event on.
    delta = HoldingsDelta()
    for changes in store_changes(0, until, batch_size):
        delta.fold(changes, users)
    expected = {key: level for key, (level, _, _, _) in delta.replace.items()}
    expected_times = {key: times for key, (_, _, _, times) in delta.replace.items()}
    expected_progress = {
        key: (steps, total)
        for key, (steps, total, _) in delta.progress.items()
        if total
    }

    actual: dict[tuple[str, str], int] = {}
    actual_times: dict[tuple[str, str], int] = {}
    rows = AchievementUnlocked.objects.using(alias).values_list(
        "user_id", "achievement_id", "level", "times"
    )
    for user_pk, achievement_id, level, times in rows.iterator(chunk_size=batch_size):
        actual[(str(user_pk), achievement_id)] = level
        actual_times[(str(user_pk), achievement_id)] = times
    _compare(
        expected,
        actual,
        result,
        missing=lambda key, level: (
            f"holdings: missing row: user {key[0]} holds {key[1]!r} at level {level}"
        ),
        extra=lambda key, level: (
            f"holdings: extra row: user {key[0]}, {key[1]!r} at level {level}, "
            "which the store does not record"
        ),
        wrong=lambda key, level, recorded: (
            f"holdings: wrong level: user {key[0]}, {key[1]!r} is at level "
            f"{level}, the store says {recorded}"
        ),
    )
    for key in sorted(expected_times.keys() & actual_times.keys()):
        if expected_times[key] != actual_times[key]:
            result.differences.append(
                f"holdings: wrong times: user {key[0]}, {key[1]!r} was awarded "
                f"{actual_times[key]} times, the store says {expected_times[key]}"
            )
    expected_counts = Counter((a, level) for (_, a), level in expected.items())
    actual_counts = {
        key: n
        for key, n in AchievementCount.objects.using(alias).holders().items()
        if n
    }
    for level_key in sorted(set(expected_counts) | set(actual_counts)):
        held, recorded = (
            actual_counts.get(level_key, 0),
            expected_counts.get(level_key, 0),
        )
        if held != recorded:
            result.differences.append(
                f"holdings: wrong count: {level_key[0]!r} level {level_key[1]} has "
                f"{held} holders, the store says {recorded}"
            )
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
    model: ReadModel, until: int, batch_size: int, result: Verification
) -> None:
    entries = LedgerEntry.objects.using(model.datastore.alias)
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
    _compare(
        expected,
        actual,
        result,
        missing=lambda position, kind: (
            f"ledger: missing entry at position {position} ({kind})"
        ),
        extra=lambda position, kind: (
            f"ledger: extra entry at position {position} ({kind}), "
            "which the store does not record"
        ),
        wrong=lambda position, kind, recorded: (
            f"ledger: entry at position {position} says {kind}, "
            f"the store says {recorded}"
        ),
    )


def _compare(
    expected: Mapping[K, V],
    actual: Mapping[K, V],
    result: Verification,
    *,
    missing: Callable[[K, V], str],
    extra: Callable[[K, V], str],
    wrong: Callable[[K, V, V], str],
) -> None:
    """Note each key the read table lacks, has in excess, or holds otherwise
    than the store says, in order of key."""
    add = result.differences.append
    for key in sorted(expected.keys() - actual.keys()):
        add(missing(key, expected[key]))
    for key in sorted(actual.keys() - expected.keys()):
        add(extra(key, actual[key]))
    for key in sorted(expected.keys() & actual.keys()):
        if expected[key] != actual[key]:
            add(wrong(key, actual[key], expected[key]))
