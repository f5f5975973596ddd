"""hero's public API: register achievements and unlock them.

import hero

hero.achievements.unlock("points_awarded", user=request.user, points=5000)
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from hero.audit import HistoryEntry
from hero.audit import history as _history
from hero.audit import levels as _levels
from hero.base import AchievementBase
from hero.conf import conf
from hero.events import NotHeld, Outcome, Progress, Revocation
from hero.events import user_achievement_id as _aggregate_id
from hero.exceptions import (
    InvalidEventName,
    InvalidLevel,
    InvalidRevocation,
    InvalidUnlockResult,
    InvalidUser,
    NotHeldError,
    UnknownAchievement,
)
from hero.ledger import Decision, get_ledger
from hero.registry import registry
from hero.signals import (
    achievement_progressed,
    achievement_revoked,
    achievement_unlocked,
    achievement_upgraded,
)
from hero.state import model_label, record_state
from hero.users import user_model

__all__ = [
    "HistoryEntry",
    "Outcome",
    "Progress",
    "Revocation",
    "get",
    "history",
    "levels",
    "register",
    "registry",
    "revoke",
    "unlock",
]

A = TypeVar("A", bound=type[AchievementBase])

_MISSING: Any = object()
logger = logging.getLogger("hero")


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


def unlock(
    event: str, /, user: Any = _MISSING, **state: Any
) -> list[Outcome | Progress]:
    """Give every achievement that listens to ``event`` its say, and record
    what it unlocks or upgrades for ``user``.

    Each listening achievement's ``unlock(user=user, **state)`` is called. When
    none answers with a level, nothing touches the database. Otherwise all
    resulting events are saved in one transaction that joins the caller's, and
    the outcomes are returned: one :class:`Outcome` per unlock or upgrade (none
    for a level the user already holds) and one :class:`Progress` per step
    forward. Signals are sent once the transaction commits.

    An achievement with ``revoke_when_unmet = True`` that answers None is revoked
    if the user holds it (this reads the store, unlike a plain no-award call).
    """
    _check_event(event)
    _check_user(user)
    listeners = registry.listeners(event)
    log_trigger = conf.HERO_RECORD_TRIGGERS
    if not listeners and not log_trigger:
        return []

    decisions: list[Decision] = []
    for achievement in listeners:
        result = achievement.unlock(user=user, **state)
        if result is not None:
            decisions.append(_decision_of(achievement, result))
        elif getattr(achievement, "revoke_when_unmet", False):
            decisions.append(Decision(achievement.id, unmet=True))
    if not decisions and not log_trigger:
        return []

    ledger = get_ledger()
    changes = ledger.record_awards(
        str(user.pk),
        decisions,
        trigger=event,
        state=record_state(state, conf.HERO_MAX_STATE_BYTES),
        log_trigger=log_trigger,
    )
    if changes:
        transaction.on_commit(
            partial(_send_signals, user, changes), using=ledger.alias, robust=True
        )
    return [c for c in changes if not isinstance(c, Revocation)]


def revoke(
    user: Any, achievement_id: str, *, reason: str, actor: Any = None
) -> Revocation:
    """Take an achievement away from a user, recording why and by whom.

    Appends a ``Revoked`` event: the read tables drop the holding, the history
    keeps it, and ``achievement_revoked`` is sent after the commit. The user can
    unlock the achievement again later. ``actor`` is who revoked it: a model
    instance (recorded as ``"app.model:pk"``) or a string.
    """
    _check_user(user, "revoke")
    _check_achievement_id(achievement_id)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRevocation(
            "revoke() needs a reason, e.g. revoke(user, 'points', reason='cheating')."
        )
    if "\x00" in reason:
        raise InvalidRevocation("revoke()'s reason must not contain a NUL character.")
    ledger = get_ledger()
    if achievement_id not in registry and not ledger.recorder.select_events(
        _aggregate_id(str(user.pk), achievement_id), limit=1
    ):
        registry.get(achievement_id)  # raises UnknownAchievement, naming the known ids
    actor_label = (
        None
        if actor is None
        else (model_label(actor) if isinstance(actor, Model) else str(actor))
    )
    if actor_label is not None and (len(actor_label) > 255 or "\x00" in actor_label):
        raise InvalidRevocation(
            "revoke()'s actor must be a model instance or a label of at most 255 "
            "characters with no NUL character."
        )
    try:
        revocation = ledger.revoke(
            str(user.pk), achievement_id, reason=reason.strip(), actor=actor_label
        )
    except NotHeld as error:
        raise NotHeldError(f"{error} Nothing was written.") from None
    transaction.on_commit(
        partial(_send_signals, user, [revocation]), using=ledger.alias, robust=True
    )
    return revocation


def history(user: Any, achievement_id: str | None = None) -> list[HistoryEntry]:
    """The user's whole history (or one achievement's), oldest first, read from
    the event store: unlocks, upgrades, revocations, progress and, when the
    trigger log is on, every unlock call."""
    _check_user(user, "history")
    if achievement_id is not None:
        _check_achievement_id(achievement_id)
    return _history(str(user.pk), achievement_id)


def levels(user: Any, at: Any = None) -> dict[str, int]:
    """{achievement id: level} the user holds now, or held at the moment ``at``,
    replaying only what took effect by then. A naive ``at`` is taken to be in
    the current time zone."""
    _check_user(user, "levels")
    if at is not None and timezone.is_naive(at):
        at = timezone.make_aware(at)
    return _levels(str(user.pk), at)


#: Longest event name the ledger keeps (LedgerEntry.trigger).
MAX_EVENT_NAME = 255


def _check_event(event: object) -> None:
    if not isinstance(event, str) or not event:
        raise InvalidEventName(
            "unlock() takes the name of what happened as a non-empty string, e.g. "
            f"unlock('points_awarded', user=request.user); got {event!r} "
            f"({type(event).__name__})."
        )
    if len(event) > MAX_EVENT_NAME or "\x00" in event:
        raise InvalidEventName(
            f"unlock()'s event name must be at most {MAX_EVENT_NAME} characters with no "
            f"NUL character; got {event[:40]!r}{'...' if len(event) > 40 else ''} "
            f"({len(event)} characters)."
        )


def _check_achievement_id(achievement_id: object) -> None:
    if not isinstance(achievement_id, str) or not achievement_id:
        raise UnknownAchievement(
            f"No achievement has id {achievement_id!r}: ids are non-empty strings, "
            "e.g. 'comments_50'."
        )


_checked_levels: list[Any] = [None, []]  # the setting's value, and its pairs


def _configured_levels() -> list[tuple[int, str]]:
    """ACHIEVEMENT_LEVELS, or a configuration error naming it (check hero.E006)."""
    from hero.checks import _valid_levels

    levels = conf.ACHIEVEMENT_LEVELS
    if levels is _checked_levels[0]:
        return _checked_levels[1]  # type: ignore[no-any-return]
    if not _valid_levels(levels):
        raise ImproperlyConfigured(
            f"ACHIEVEMENT_LEVELS is malformed: {levels!r} (system check hero.E006). "
            "It must be a sequence of (number, name) pairs, e.g. ((1, 'Bronze'),)."
        )
    pairs = [(number, name) for number, name in levels]
    _checked_levels[:] = [levels, pairs]
    return pairs


def _check_user(user: object, function: str = "unlock") -> None:
    if user is _MISSING or user is None:
        example = (
            "unlock('points_awarded', user=request.user, ...)"
            if function == "unlock"
            else f"{function}(request.user, ...)"
        )
        raise InvalidUser(f"{function}() needs the user it is about: {example}.")
    if getattr(user, "is_anonymous", False):
        raise InvalidUser(
            f"{function}() was given an anonymous user. Achievements belong to saved "
            f"users: check request.user.is_authenticated before calling {function}()."
        )
    model = user_model()
    if not isinstance(user, model):
        raise InvalidUser(
            f"{function}() needs a {model._meta.label} instance as user, got "
            f"{user!r} ({type(user).__name__})."
        )
    assert isinstance(user, Model)
    if user.pk is None:
        raise InvalidUser(
            f"{function}() was given a user that is not saved yet (its pk is None): "
            "save the user first."
        )


def _decision_of(achievement: AchievementBase, result: object) -> Decision:
    from hero.models import AchievementProgress, AchievementUnlocked

    if isinstance(result, AchievementUnlocked):
        return Decision(achievement.id, level=_level_of(achievement, result.level))
    if isinstance(result, AchievementProgress):
        total = getattr(achievement, "steps", None)
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise InvalidUnlockResult(
                f"{type(achievement).__qualname__}.unlock() reported progress, but the "
                f"achievement declares no steps (steps = {total!r}). Set steps = N, "
                "the number of steps that completes it."
            )
        steps = result.steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise InvalidUnlockResult(
                f"{type(achievement).__qualname__}.unlock() reported steps={steps!r}; "
                "steps must be a whole number of at least 0."
            )
        lowest = min(number for number, _ in _configured_levels())
        return Decision(achievement.id, level=lowest, steps=steps, total=total)
    raise InvalidUnlockResult(
        f"{type(achievement).__qualname__}.unlock() returned {result!r}; it must "
        "return AchievementUnlocked(level=N) to award level N, "
        "AchievementProgress(steps=k) to report progress, or None."
    )


def _level_of(achievement: AchievementBase, level: object) -> int:
    levels = _configured_levels()
    allowed = [number for number, _ in levels]
    if isinstance(level, bool) or not isinstance(level, int) or level not in allowed:
        names = ", ".join(f"{n} ({name})" for n, name in levels)
        raise InvalidLevel(
            f"Achievement {achievement.id!r} answered with level {level!r}, which is "
            f"not in ACHIEVEMENT_LEVELS. Allowed levels: {names}."
        )
    return level


def _send_signals(user: Any, changes: list[Outcome | Progress | Revocation]) -> None:
    """Send the signals of committed changes. A receiver that raises is logged
    (logger ``hero``) and does not keep the other receivers from running: the
    change is recorded whatever a receiver does."""
    for change in changes:
        achievement = (
            registry.get(change.achievement_id)
            if change.achievement_id in registry
            else None
        )
        sender = type(achievement) if achievement is not None else AchievementBase
        if isinstance(change, Outcome):
            signal = achievement_upgraded if change.upgraded else achievement_unlocked
            _log_failures(
                signal,
                signal.send_robust(
                    sender=sender,
                    user=user,
                    achievement=achievement,
                    level=change.level,
                    previous_level=change.previous_level,
                ),
            )
        elif isinstance(change, Progress):
            _log_failures(
                achievement_progressed,
                achievement_progressed.send_robust(
                    sender=sender,
                    user=user,
                    achievement=achievement,
                    steps=change.steps,
                    previous_steps=change.previous_steps,
                    total=change.total,
                ),
            )
        else:
            _log_failures(
                achievement_revoked,
                achievement_revoked.send_robust(
                    sender=sender,
                    user=user,
                    achievement=achievement,
                    level=change.level,
                    reason=change.reason,
                    actor=change.actor,
                ),
            )


def _log_failures(signal: Any, results: list[tuple[Any, Any]]) -> None:
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error(
                "Receiver %r of hero's signal raised after the change was committed",
                receiver,
                exc_info=result,
            )
