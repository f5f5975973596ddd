"""hero's public API: register achievements and unlock them.

    import hero

    hero.achievements.unlock("points_awarded", user=request.user, points=5000)
"""

from __future__ import annotations

from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Model

from hero.base import AchievementBase
from hero.conf import conf
from hero.events import Outcome
from hero.exceptions import (
    InvalidEventName,
    InvalidLevel,
    InvalidUnlockResult,
    InvalidUser,
)
from hero.ledger import get_ledger
from hero.registry import registry
from hero.signals import achievement_unlocked, achievement_upgraded
from hero.state import record_state

__all__ = ["Outcome", "get", "register", "registry", "unlock"]

A = TypeVar("A", bound=type[AchievementBase])

_MISSING: Any = object()


def register(cls: A) -> A:
    """Register an achievement class defined outside an ``achievements`` module.

    Usable as a class decorator. Registering the same class again is harmless;
    another class with the same ``id`` raises :class:`~hero.exceptions.DuplicateAchievement`.
    """
    registry.add(cls, explicit=True)
    return cls


def get(achievement_id: str) -> AchievementBase:
    """The registered achievement with this id, or ``UnknownAchievement``."""
    return registry.get(achievement_id)


def unlock(event: str, /, user: Any = _MISSING, **state: Any) -> list[Outcome]:
    """Give every achievement that listens to ``event`` its say, and record
    what it unlocks or upgrades for ``user``.

    Each listening achievement's ``unlock(user=user, **state)`` is called. When
    none answers with a level, nothing touches the database. Otherwise all
    resulting events are saved in one transaction that joins the caller's, and
    the outcomes are returned: one per unlock or upgrade, none for a level the
    user already holds. Signals are sent once the transaction commits.
    """
    _check_event(event)
    _check_user(user)
    listeners = registry.listeners(event)
    log_trigger = conf.HERO_RECORD_TRIGGERS
    if not listeners and not log_trigger:
        return []

    awards: list[tuple[str, int]] = []
    for achievement in listeners:
        result = achievement.unlock(user=user, **state)
        if result is not None:
            awards.append((achievement.id, _level_of(achievement, result)))
    if not awards and not log_trigger:
        return []

    ledger = get_ledger()
    outcomes = ledger.record_awards(
        str(user.pk),
        awards,
        trigger=event,
        state=record_state(state, conf.HERO_MAX_STATE_BYTES),
        log_trigger=log_trigger,
    )
    if outcomes:
        transaction.on_commit(partial(_send_signals, user, outcomes), using=ledger.alias)
    return outcomes


def _check_event(event: object) -> None:
    if not isinstance(event, str) or not event:
        raise InvalidEventName(
            "unlock() takes the name of what happened as a non-empty string, e.g. "
            f"unlock('points_awarded', user=request.user); got {event!r} "
            f"({type(event).__name__})."
        )


def _check_user(user: object) -> None:
    if user is _MISSING or user is None:
        raise InvalidUser(
            "unlock() needs the user the event happened to: "
            "unlock('points_awarded', user=request.user, ...)."
        )
    if getattr(user, "is_anonymous", False):
        raise InvalidUser(
            "unlock() was given an anonymous user. Achievements belong to saved "
            "users: check request.user.is_authenticated before calling unlock()."
        )
    user_model = _user_model()
    if not isinstance(user, user_model):
        raise InvalidUser(
            f"unlock() needs a {user_model._meta.label} instance as user, got "
            f"{user!r} ({type(user).__name__})."
        )
    assert isinstance(user, Model)
    if user.pk is None:
        raise InvalidUser(
            "unlock() was given a user that is not saved yet (its pk is None): "
            "save the user before unlocking achievements for it."
        )


_user_models: dict[str, Any] = {}


def _user_model() -> Any:
    """The user model, looked up once per AUTH_USER_MODEL value."""
    key = settings.AUTH_USER_MODEL
    model = _user_models.get(key)
    if model is None:
        model = _user_models[key] = get_user_model()
    return model


def _level_of(achievement: AchievementBase, result: object) -> int:
    from hero.models import AchievementUnlocked

    if not isinstance(result, AchievementUnlocked):
        raise InvalidUnlockResult(
            f"{type(achievement).__qualname__}.unlock() returned {result!r}; it must "
            "return AchievementUnlocked(level=N) to award level N, or None."
        )
    level = result.level
    allowed = [number for number, _ in conf.ACHIEVEMENT_LEVELS]
    if isinstance(level, bool) or not isinstance(level, int) or level not in allowed:
        names = ", ".join(f"{n} ({name})" for n, name in conf.ACHIEVEMENT_LEVELS)
        raise InvalidLevel(
            f"Achievement {achievement.id!r} answered with level {level!r}, which is "
            f"not in ACHIEVEMENT_LEVELS. Allowed levels: {names}."
        )
    return level


def _send_signals(user: Any, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        achievement = registry.get(outcome.achievement_id)
        signal = achievement_upgraded if outcome.upgraded else achievement_unlocked
        signal.send(
            sender=type(achievement),
            user=user,
            achievement=achievement,
            level=outcome.level,
            previous_level=outcome.previous_level,
        )
