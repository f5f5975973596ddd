"""Achievements of the test app: the original README's example, then others."""

from __future__ import annotations

from typing import Any

from hero import AchievementBase, AchievementMeta  # noqa: F401  (the README imports both)
from hero.models import AchievementUnlocked


class TestAchievement(AchievementBase):
    __test__ = False  # not a pytest test class

    # Achievement attributes
    id = "comments_50"
    title = "50 comments"
    description = "User has posted 50 comments"
    secret = False
    invisible = False
    image_locked = "achievements/images/default-locked.jpg"
    image_unlocked = "achievements/images/default-unlocked.jpg"
    image_secret = "achievements/images/default-hidden.jpg"

    # Events on which this achievement should be called
    events = ["points_awarded"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        # Validates unlock requirements
        user = state["user"]  # noqa: F841
        points = 5000
        if points == 5000:
            return AchievementUnlocked(level=1)
        return None


class Points(AchievementBase):
    """Bronze at 10 points, Silver at 100, Gold at 1,000, Diamond at 10,000."""

    id = "points"
    title = "Points"
    description = "Collect points"
    events = ["score_changed"]

    thresholds = ((10_000, 4), (1_000, 3), (100, 2), (10, 1))

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        points = state.get("points", 0)
        for minimum, level in self.thresholds:
            if points >= minimum:
                return AchievementUnlocked(level=level)
        return None


class Secretive(AchievementBase):
    id = "night_owl"
    title = "Night owl"
    description = "Posted between 2 and 4 in the morning"
    secret = True
    events = ["score_changed"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        return AchievementUnlocked(level=1) if state.get("night") else None


class AwardsFirst(AchievementBase):
    # Listens to the same event as Explodes, and is asked first.
    id = "awards_first"
    title = "Awards first"
    events = ["explode", "reports"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        return AchievementUnlocked(level=state.get("level", 1))


class Explodes(AchievementBase):
    id = "explodes"
    title = "Explodes"
    events = ["explode"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        raise RuntimeError("unlock() failed")


class Bookworm(AchievementBase):
    """Progress: five chapters read completes it."""

    id = "bookworm"
    title = "Bookworm"
    description = "Read five chapters"
    steps = 5
    events = ["chapter_read"]

    def unlock(self, **state: Any) -> Any:
        from hero import AchievementProgress

        return AchievementProgress(steps=state["chapters"])


class TopTen(AchievementBase):
    """Held only while the user ranks in the top ten (revoked when not)."""

    id = "top_ten"
    title = "Top ten"
    events = ["rank_changed"]
    revoke_when_unmet = True

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        return AchievementUnlocked(level=1) if state["rank"] <= 10 else None


class EarlyBird(AchievementBase):
    """Backfilled from the users table: everyone named early* who joined."""

    id = "early_bird"
    title = "Early bird"
    events = ["never_sent"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        return None

    def backfill(self) -> Any:
        from django.contrib.auth import get_user_model

        from hero.conf import conf

        users = get_user_model().objects.using(conf.HERO_DATABASE)
        for user in users.filter(username__startswith="early").order_by("pk"):
            yield user.pk, 1, user.date_joined


class HiddenGem(AchievementBase):
    """Invisible: not listed at all until unlocked."""

    id = "hidden_gem"
    title = "Hidden gem"
    description = "Found the room behind the waterfall"
    invisible = True
    events = ["gem_found"]

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        return AchievementUnlocked(level=1)
