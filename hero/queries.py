"""Querysets over the read tables: what views and site code ask of hero."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Sum

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

        holders = (
            AchievementCount.objects.using(self.db)
            .filter(achievement_id=achievement_id, level__gte=level)
            .aggregate(total=Sum("holders"))["total"]
            or 0
        )
        users = get_user_model()._default_manager.db_manager(self.db).count()
        return Rarity(achievement_id, level, holders, users)
