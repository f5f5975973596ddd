"""The "points" achievement of the unlock and concurrency benchmarks, for hero and
for pinax-badges: 10 points or more is level 1 (Bronze), 100 Silver, 1000 Gold,
10000 Diamond; below 10 it awards nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EVENT = "points_awarded"

#: (minimum points, level number, level name), highest first.
THRESHOLDS: tuple[tuple[int, int, str], ...] = (
    (10_000, 4, "Diamond"),
    (1_000, 3, "Gold"),
    (100, 2, "Silver"),
    (10, 1, "Bronze"),
)

LEVEL_NAMES: tuple[str, ...] = tuple(name for _, _, name in reversed(THRESHOLDS))

#: One unlock call: (user, points) -> what the library returns.
Call = Callable[[Any, int], Any]


def points_level(points: int) -> int | None:
    """The level ``points`` earns, or None below the first threshold."""
    for minimum, level, _ in THRESHOLDS:
        if points >= minimum:
            return level
    return None


def hero_call() -> Call:
    """Register the points achievement with hero; return one unlock call."""
    from hero import AchievementBase, AchievementUnlocked, achievements

    class Points(AchievementBase):
        id = "points"
        title = "Points"
        events = [EVENT]

        def unlock(self, **state: Any) -> AchievementUnlocked | None:
            level = points_level(state["points"])
            return None if level is None else AchievementUnlocked(level=level)

    achievements.register(Points)
    return lambda user, points: achievements.unlock(EVENT, user=user, points=points)


def pinax_call() -> Call:
    """Register the points badge with pinax-badges; return one unlock call."""
    from pinax.badges.base import Badge, BadgeAwarded
    from pinax.badges.registry import badges

    # pinax has no type hints, so Badge is Any to a type checker.
    class PointsBadge(Badge):  # type: ignore[misc]
        slug = "points"
        levels = list(LEVEL_NAMES)
        events = [EVENT]
        multiple = False
        # Award in the caller's thread (pinax's other path queues a Celery task).
        async_ = False

        def award(self, **state: Any) -> BadgeAwarded | None:
            level = points_level(state["points"])
            return None if level is None else BadgeAwarded(level=level)

    badges.register(PointsBadge)
    return lambda user, points: badges.possibly_award_badge(
        EVENT, user=user, points=points
    )
