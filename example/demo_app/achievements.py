"""The demo's achievements: the original README's example, and one of each kind."""

from __future__ import annotations

from typing import Any

from hero import AchievementBase, AchievementProgress, AchievementUnlocked


class TestAchievement(AchievementBase):
    """The original README's example, with its typos mended."""

    id = "comments_50"
    title = "50 comments"
    description = "User has posted 50 comments"
    events = ["comment_posted"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        if state["comments"] >= 50:
            return AchievementUnlocked(level=1)
        return None


class Points(AchievementBase):
    """Bronze at 100 points, Silver at 1,000, Gold at 5,000, Diamond at 15,000."""

    id = "points"
    title = "Point collector"
    description = "Collect points: Bronze at 100, Silver at 1,000, Gold at 5,000, Diamond at 15,000"
    events = ["points_awarded"]
    thresholds = ((15_000, 4), (5_000, 3), (1_000, 2), (100, 1))

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        for minimum, level in self.thresholds:
            if state["points"] >= minimum:
                return AchievementUnlocked(level=level)
        return None


class NightOwl(AchievementBase):
    """Secret: listed, but what it is stays hidden until unlocked."""

    id = "night_owl"
    title = "Night owl"
    description = "Posted a comment between 2 and 4 in the morning"
    secret = True
    events = ["comment_posted"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        return AchievementUnlocked(level=1) if 2 <= state["hour"] < 4 else None


class Explorer(AchievementBase):
    """Invisible: not listed at all until unlocked."""

    id = "explorer"
    title = "Explorer"
    description = "Found the page nobody links to"
    invisible = True
    events = ["page_viewed"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        return AchievementUnlocked(level=1) if state["path"] == "/hidden/" else None


class Bookworm(AchievementBase):
    """Progress: ten articles read completes it."""

    id = "bookworm"
    title = "Bookworm"
    description = "Read ten articles"
    steps = 10
    events = ["article_read"]

    def unlock(self, **state: Any) -> AchievementProgress:
        return AchievementProgress(steps=state["articles"])
