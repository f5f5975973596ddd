"""The catalog: the Achievement table, kept in step with the registered classes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connections

from hero.models import Achievement
from hero.registry import registry
from hero.store.sql import insert_missing

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

    from hero.base import AchievementBase

FIELDS = (
    "id",
    "title",
    "description",
    "secret",
    "invisible",
    "image_locked",
    "image_unlocked",
    "image_secret",
    "steps",
    "retired",
)


def catalog_values(achievement: AchievementBase) -> dict[str, Any]:
    """The catalog row of a registered achievement."""
    return {
        "id": achievement.id,
        "title": str(getattr(achievement, "title", "") or achievement.id),
        "description": str(getattr(achievement, "description", "") or ""),
        "secret": bool(getattr(achievement, "secret", False)),
        "invisible": bool(getattr(achievement, "invisible", False)),
        "image_locked": getattr(achievement, "image_locked", None) or "",
        "image_unlocked": getattr(achievement, "image_unlocked", None) or "",
        "image_secret": getattr(achievement, "image_secret", None) or "",
        "steps": _steps(achievement),
        "retired": False,
    }


def _steps(achievement: AchievementBase) -> int | None:
    steps = getattr(achievement, "steps", None)
    valid = isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1
    return steps if valid else None


def _values_for(achievement_id: str) -> dict[str, Any]:
    if achievement_id in registry:
        return catalog_values(registry.get(achievement_id))
    # Awarded once but no longer defined: keep it resolvable, marked retired.
    return {
        **dict.fromkeys(FIELDS, ""),
        "id": achievement_id,
        "title": achievement_id,
        "secret": False,
        "invisible": False,
        "steps": None,
        "retired": True,
    }


_rows: dict[tuple[str, int], tuple[Any, ...]] = {}


def _row_for(achievement_id: str) -> tuple[Any, ...]:
    key = (achievement_id, registry.version)
    row = _rows.get(key)
    if row is None:
        values = _values_for(achievement_id)
        row = _rows[key] = tuple(values[f] for f in FIELDS)
    return row


def ensure_catalog_rows(cursor: CursorWrapper, alias: str, ids: Iterable[str]) -> None:
    """Insert the catalog rows that projected rows refer to, if missing."""
    rows = [_row_for(i) for i in sorted(set(ids))]
    if rows:
        cursor.executemany(
            insert_missing(cursor.db.vendor, "hero_achievement", FIELDS, ("id",)), rows
        )


@dataclass(frozen=True)
class SyncResult:
    current: int
    retired: list[str]


def sync_catalog(alias: str) -> SyncResult:
    """Write every registered achievement into the catalog, and mark the ones no
    longer registered as retired."""

    manager = Achievement.objects.db_manager(alias)
    rows = [Achievement(**catalog_values(a)) for a in registry]
    # MySQL updates on any unique key and takes no conflict target.
    target = connections[alias].features.supports_update_conflicts_with_target
    manager.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["id"] if target else None,
        update_fields=[f for f in FIELDS if f != "id"],
    )
    current = [row.id for row in rows]
    retired = list(
        manager.exclude(id__in=current)
        .filter(retired=False)
        .values_list("id", flat=True)
    )
    manager.filter(id__in=retired).update(retired=True)
    return SyncResult(current=len(current), retired=retired)
