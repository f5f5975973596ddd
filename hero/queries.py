"""Querysets over the read tables: what views and site code ask of hero."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import connections, models

if TYPE_CHECKING:
    from hero.models import AchievementUnlocked  # noqa: F401


class AchievementUnlockedQuerySet(models.QuerySet["AchievementUnlocked"]):
    def for_user(self, user: Any) -> AchievementUnlockedQuerySet:
        """The user's achievements, with their catalog data, in one query."""
        return self.filter(user=user).select_related("achievement")

    def holders(
        self, achievement_id: str, min_level: int = 1
    ) -> AchievementUnlockedQuerySet:
        """Holdings of an achievement at ``min_level`` or above."""
        return self.filter(achievement_id=achievement_id, level__gte=min_level)


@dataclass(frozen=True)
class Rarity:
    """How many users hold an achievement (at or above a level), of how many."""

    achievement_id: str
    level: int
    holders: int
    users: int

    @property
    def percent(self) -> float:
        return 100.0 * self.holders / self.users if self.users else 0.0


class AchievementQuerySet(models.QuerySet[Any]):
    def listed(self) -> AchievementQuerySet:
        """Achievements still defined in the code (not retired)."""
        return self.filter(retired=False)

    def rarity(self, achievement_id: str, level: int = 1) -> Rarity:
        """The share of users holding the achievement at ``level`` or above,
        read from the per-level counts (a few rows), not from the holdings."""
        # An import cycle: hero.models imports this module for its managers.
        from hero.models import AchievementCount

        counts = AchievementCount.objects.using(self.db).holders([achievement_id])
        holders = sum(n for (_, lvl), n in counts.items() if lvl >= level)
        users = get_user_model()._default_manager.db_manager(self.db).count()
        return Rarity(achievement_id, level, holders, users)


class AchievementCountQuerySet(models.QuerySet[Any]):
    def holders(
        self, achievement_ids: Collection[str] | None = None
    ) -> dict[tuple[str, int], int]:
        """Holders per (achievement, level), of the achievements given (or all),
        as this transaction sees them.

        On PostgreSQL a transaction's own awards wait in
        :class:`~hero.models.AchievementCountChange` until its ``COMMIT`` adds
        them to the counts; they are added here, so that a view reads its own
        awards. Other transactions' changes are not visible until committed,
        and at their commit they are already in the counts.
        """
        # An import cycle: hero.models imports this module for its managers.
        from hero.models import AchievementCountChange

        totals: Counter[tuple[str, int]] = Counter()
        sources: list[models.QuerySet[Any]] = [self]
        connection = connections[self.db]
        if connection.vendor == "postgresql" and connection.in_atomic_block:
            sources.append(AchievementCountChange.objects.using(self.db))
        for rows in sources:
            if achievement_ids is not None:
                rows = rows.filter(achievement_id__in=list(achievement_ids))
            for achievement_id, level, n in rows.values_list(
                "achievement_id", "level", "holders"
            ):
                totals[(achievement_id, level)] += n
        return dict(totals)
