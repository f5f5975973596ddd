"""The points achievement as a pinax-badges 3.0.0 badge.

Import only after ``_pinax_shims.apply()`` and ``django.setup()``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from _points import EVENT, LEVEL_NAMES, points_level
from pinax.badges.base import Badge, BadgeAwarded
from pinax.badges.registry import badges


# pinax has no type hints, so Badge is Any to a type checker.
class PointsBadge(Badge):  # type: ignore[misc]
    slug = "points"
    levels: ClassVar[list[str]] = list(LEVEL_NAMES)
    events: ClassVar[list[str]] = [EVENT]
    multiple = False
    # Award in the caller's thread (pinax's other path queues a Celery task).
    async_ = False

    def award(self, **state: Any) -> BadgeAwarded | None:
        level = points_level(state["points"])
        return None if level is None else BadgeAwarded(level=level)


badges.register(PointsBadge)


def call(user: Any, points: int) -> None:
    """One unlock call: pinax returns nothing, it records the award (if any)."""
    badges.possibly_award_badge(EVENT, user=user, points=points)
