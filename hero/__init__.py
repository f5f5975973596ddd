"""hero: achievements for Django users, kept in an event-sourced ledger.

from hero import AchievementBase, AchievementUnlocked
import hero

hero.achievements.unlock("points_awarded", user=request.user)
"""

from __future__ import annotations

import importlib
from typing import Any

from django.utils.module_loading import autodiscover_modules

from hero.base import AchievementBase, AchievementMeta

__version__ = "0.1.0.dev0"
__all__ = [
    "AchievementBase",
    "AchievementMeta",
    "AchievementProgress",
    "AchievementUnlocked",
    "achievements",
    "autodiscover",
]


def autodiscover() -> None:
    """Import the ``achievements`` module of every installed app.

    hero does this when Django starts; calling it again is harmless.
    """
    autodiscover_modules("achievements")


def __getattr__(name: str) -> Any:
    # Loaded on first use: these need Django's app registry to be ready.
    if name in {"AchievementUnlocked", "AchievementProgress"}:
        from hero import models

        return getattr(models, name)
    if name in {"achievements", "signals", "models", "exceptions"}:
        return importlib.import_module(f"hero.{name}")
    raise AttributeError(f"module 'hero' has no attribute {name!r}")
