"""hero's settings, read from Django's settings on every access.

Every setting hero reads goes through :data:`conf`, so ``override_settings`` in
tests and changes at run time are always seen. Nothing else in hero imports
``django.conf.settings`` for hero's own settings.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULT_LEVELS: tuple[tuple[int, str], ...] = (
    (1, "Bronze"),
    (2, "Silver"),
    (3, "Gold"),
    (4, "Diamond"),
)


class Settings:
    """Typed access to hero's settings, each with its documented default."""

    @property
    def HERO_DATABASE(self) -> str:
        """Alias of the database that holds the event store and the read tables."""
        return str(getattr(settings, "HERO_DATABASE", "default"))

    @property
    def HERO_SUBSCRIPTION_POLL_INTERVAL(self) -> float:
        """Seconds a subscription waits before asking the store for new events."""
        return float(getattr(settings, "HERO_SUBSCRIPTION_POLL_INTERVAL", 0.1))

    @property
    def HERO_RECORD_TRIGGERS(self) -> bool:
        """Record every unlock call, even one that awards nothing."""
        return bool(getattr(settings, "HERO_RECORD_TRIGGERS", False))

    @property
    def HERO_MAX_STATE_BYTES(self) -> int:
        """Largest state, as JSON, that one unlock call may record."""
        return int(getattr(settings, "HERO_MAX_STATE_BYTES", 65536))

    @property
    def HERO_UNLOCK_ATTEMPTS(self) -> int:
        """How often unlock decides again after losing a race to another writer."""
        return int(getattr(settings, "HERO_UNLOCK_ATTEMPTS", 5))

    @property
    def HERO_PROJECTIONS(self) -> str:
        """``"inline"``: read tables change in the unlock's transaction;
        ``"async"``: a ``hero_project`` worker updates them."""
        return str(getattr(settings, "HERO_PROJECTIONS", "inline"))

    @property
    def ACHIEVEMENT_LEVELS(self) -> Any:
        """The levels an achievement can be unlocked at: ``((number, name), ...)``."""
        return getattr(settings, "ACHIEVEMENT_LEVELS", DEFAULT_LEVELS)

    @property
    def ACHIEVEMENT_IMAGE_LOCKED(self) -> Any:
        return getattr(
            settings,
            "ACHIEVEMENT_IMAGE_LOCKED",
            "achievements/images/default-locked.jpg",
        )

    @property
    def ACHIEVEMENT_IMAGE_UNLOCKED(self) -> Any:
        return getattr(
            settings,
            "ACHIEVEMENT_IMAGE_UNLOCKED",
            "achievements/images/default-unlocked.jpg",
        )

    @property
    def ACHIEVEMENT_IMAGE_SECRET(self) -> Any:
        return getattr(
            settings,
            "ACHIEVEMENT_IMAGE_SECRET",
            "achievements/images/default-secret.jpg",
        )


conf = Settings()
