"""The achievements of the rebuild benchmark's store, and which awards each user gets.

Four achievements with levels. Every user unlocks all four and is upgraded
0, 1, 2 and 3 times in them, the achievement with no upgrade rotating from one
user to the next: 4 unlocks + 6 upgrades = 10 events per user.

Import only after ``django.setup()``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hero import AchievementBase, achievements

ACHIEVEMENT_IDS: tuple[str, ...] = ("bench-a", "bench-b", "bench-c", "bench-d")
EVENTS_PER_USER = 10
TRIGGER = "points_awarded"


class _Bench(AchievementBase):
    abstract = True
    events: ClassVar[list[str]] = [TRIGGER]

    def unlock(self, **state: Any) -> None:  # never asked: events are built directly
        return None


def _define(achievement_id: str) -> type[AchievementBase]:
    cls = type(
        f"Bench_{achievement_id.replace('-', '_')}",
        (_Bench,),
        {"id": achievement_id, "title": achievement_id.title(), "abstract": False},
    )
    return achievements.register(cls)


for _id in ACHIEVEMENT_IDS:
    _define(_id)


def awards(user_index: int) -> list[tuple[str, int]]:
    """(achievement id, highest level) for the user numbered ``user_index``: the
    user is awarded levels 1, 2, ... up to that level, one event each."""
    return [
        (achievement_id, 1 + (user_index + k) % len(ACHIEVEMENT_IDS))
        for k, achievement_id in enumerate(ACHIEVEMENT_IDS)
    ]
