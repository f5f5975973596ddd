"""hero's domain: aggregates and the events they record."""

from __future__ import annotations

from hero.events.aggregates import (
    NAMESPACE,
    Outcome,
    Progress,
    Revocation,
    TriggerLog,
    UserAchievement,
    trigger_log_id,
    user_achievement_id,
)

__all__ = [
    "NAMESPACE",
    "Outcome",
    "Progress",
    "Revocation",
    "TriggerLog",
    "UserAchievement",
    "trigger_log_id",
    "user_achievement_id",
]
