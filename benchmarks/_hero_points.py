"""The points achievement as a hero achievement.

Import only after ``django.setup()``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from _points import EVENT, points_level

from hero import AchievementBase, AchievementUnlocked, achievements


class Points(AchievementBase):
    id = "points"
    title = "Points"
    events: ClassVar[list[str]] = [EVENT]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        level = points_level(state["points"])
        return None if level is None else AchievementUnlocked(level=level)


achievements.register(Points)


def call(user: Any, points: int) -> list[Any]:
    """One unlock call: hero returns the list of outcomes."""
    return achievements.unlock(EVENT, user=user, points=points)
