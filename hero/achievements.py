"""hero's public API: register achievements and unlock them.

import hero

hero.achievements.unlock("points_awarded", user=request.user, points=5000)
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import transaction

from hero.audit import HistoryEntry, known_achievement_ids
from hero.audit import history as _history
from hero.audit import levels as _levels
from hero.base import AchievementBase
from hero.conf import conf
from hero.events import Outcome, Progress, Revocation
from hero.events import user_achievement_id as _aggregate_id
from hero.exceptions import InvalidGrant
from hero.ledger import Decision, Effect, get_ledger
from hero.registry import registry
from hero.signals import (
    achievement_progressed,
    achievement_revoked,
    achievement_unlocked,
    achievement_upgraded,
)
from hero.validation import (
    MISSING,
    actor_of,
    check_achievement_id,
    check_event,
    check_user,
    decision_of,
    grant_level_of,
    is_repeatable,
    moment_of,
    reason_of,
    recorded_state,
    revoked_key_of,
)

__all__ = [
    "HistoryEntry",
    "Outcome",
    "Progress",
    "Revocation",
    "aforget",
    "agrant",
    "ahistory",
    "alevels",
    "arevoke",
    "aunlock",
    "forget",
    "get",
    "grant",
    "history",
    "levels",
    "register",
    "registry",
    "revoke",
    "unlock",
]

A = TypeVar("A", bound=type[AchievementBase])

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
    event: str, /, user: Any = MISSING, **state: Any
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
    # An event some achievement listens to had its name checked once, by the
    # registry; any other is checked here.
    listeners = registry.checked_listeners.get(event) if type(event) is str else None
    if listeners is None:
        check_event(event)
        listeners = registry.listeners(event)
    if not isinstance(user, conf.user_model) or user.pk is None:
        check_user(user)  # says what is wrong; the usual case costs no call
    log_trigger = conf.HERO_RECORD_TRIGGERS
    if not listeners and not log_trigger:
        return []

    decisions: list[Decision] = []
    for achievement in listeners:
        result = achievement.unlock(user=user, **state)
        if result is not None:
            decisions.append(decision_of(achievement, result))
        elif achievement.revoke_when_unmet:
            decisions.append(Decision(achievement.id, unmet=True))
    if not decisions and not log_trigger:
        return []

    ledger = get_ledger()
    effects = ledger.record_awards(
        str(user.pk),
        decisions,
        trigger=event,
        state=recorded_state(state, conf.HERO_MAX_STATE_BYTES),
        log_trigger=log_trigger,
    )
    if effects:
        transaction.on_commit(
            partial(_send_signals, user, effects), using=ledger.alias, robust=True
        )
    return [e for e in effects if not isinstance(e, Revocation)]


def revoke(
    user: Any,
    achievement_id: str,
    *,
    reason: str,
    actor: Any = None,
    key: str | None = None,
) -> Revocation:
    """Take an achievement away from a user, recording why and by whom.

    Appends a ``Revoked`` event: the read tables drop the holding, the history
    keeps it, and ``achievement_revoked`` is sent after the commit. The user can
    unlock the achievement again later. ``actor`` is who revoked it: a model
    instance (recorded as ``"app.model:pk"``) or a string.

    For a repeatable achievement, ``key`` takes away that one award (an
    ``AwardRevoked`` event); without it, every award goes. A revoked key is
    never awarded again.
    """
    check_user(user, "revoke")
    check_achievement_id(achievement_id)
    reason = reason_of(reason)
    actor_label = actor_of(actor)
    award_key = revoked_key_of(achievement_id, key)
    ledger = get_ledger()
    if achievement_id not in registry and not ledger.recorder.select_events(
        _aggregate_id(str(user.pk), achievement_id), limit=1
    ):
        registry.get(achievement_id)  # raises UnknownAchievement, naming the known ids
    revocation = ledger.revoke(
        str(user.pk), achievement_id, reason=reason, actor=actor_label, key=award_key
    )
    transaction.on_commit(
        partial(_send_signals, user, [revocation]), using=ledger.alias, robust=True
    )
    return revocation


def history(user: Any, achievement_id: str | None = None) -> list[HistoryEntry]:
    """The user's whole history (or one achievement's), oldest first, read from
    the event store: unlocks, upgrades, revocations, progress and, when the
    trigger log is on, every unlock call."""
    check_user(user, "history")
    if achievement_id is not None:
        check_achievement_id(achievement_id)
    return _history(str(user.pk), achievement_id)


def forget(user: Any) -> int:
    """Forget a user (an erasure request): what the site passed for them can
    no longer be read from any of hero's tables, and they hold nothing.

    In one transaction (the caller's, if any): a ``Forgotten`` event on each of
    the user's achievements with a history, the user's data keys deleted (they
    sealed every state, key, reason and actor recorded for them), their
    snapshots deleted, and the read tables exact at once (holdings, progress
    and counts; ledger entries kept, anonymised). The store keeps that awards
    happened, and its chain still verifies. Deleting a user does this by
    itself. Returns the number of achievements forgotten.
    """
    check_user(user, "forget")
    ledger = get_ledger()
    return ledger.forget(str(user.pk), known_achievement_ids(ledger.alias))


def levels(user: Any, at: Any = None) -> dict[str, int]:
    """{achievement id: level} the user holds now, or held at the moment ``at``,
    replaying only what took effect by then. A naive ``at`` is taken to be in
    the current time zone."""
    check_user(user, "levels")
    return _levels(str(user.pk), moment_of(at))


def _send_signals(user: Any, effects: list[Effect]) -> None:
    """Send the signals of committed effects, one per award (each award of a
    repeatable achievement has its own, with its ``key`` and ``times``). A
    receiver that raises is logged (logger ``hero``) and does not keep the
    other receivers from running: the effect is recorded whatever a receiver
    does."""
    for effect in effects:
        achievement = (
            registry.get(effect.achievement_id)
            if effect.achievement_id in registry
            else None
        )
        sender = type(achievement) if achievement is not None else AchievementBase
        if isinstance(effect, Outcome):
            signal = achievement_upgraded if effect.upgraded else achievement_unlocked
            _log_failures(
                signal,
                signal.send_robust(
                    sender=sender,
                    user=user,
                    achievement=achievement,
                    level=effect.level,
                    previous_level=effect.previous_level,
                    key=effect.key,
                    times=effect.times,
                ),
            )
        elif isinstance(effect, Progress):
            _log_failures(
                achievement_progressed,
                achievement_progressed.send_robust(
                    sender=sender,
                    user=user,
                    achievement=achievement,
                    steps=effect.steps,
                    previous_steps=effect.previous_steps,
                    total=effect.total,
                ),
            )
        else:
            _log_failures(
                achievement_revoked,
                achievement_revoked.send_robust(
                    sender=sender,
                    user=user,
                    achievement=achievement,
                    level=effect.level,
                    reason=effect.reason,
                    actor=effect.actor,
                    key=effect.key,
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


def grant(
    user: Any,
    achievement_id: str,
    *,
    level: int | None = None,
    reason: str,
    actor: Any = None,
) -> Outcome:
    """Award an achievement by hand, recording why and by whom: the counterpart
    of :func:`revoke`, for what a site decides rather than earns through
    ``unlock()`` (a contest prize, a correction).

    Appends a ``Granted`` event at ``level`` (default: the lowest level): the
    read tables hold it as an unlock, or an upgrade from a lower level held;
    the history and the ledger keep the reason and the actor; and
    ``achievement_unlocked`` or ``achievement_upgraded`` is sent after the
    commit. ``actor`` is a model instance (recorded as ``"app.model:pk"``) or
    a string. Granting a level the user holds, or a lower one, raises
    ``AlreadyHeldError`` and writes nothing.
    """
    check_user(user, "grant")
    check_achievement_id(achievement_id)
    # UnknownAchievement, naming the registered ids
    if is_repeatable(registry.get(achievement_id)):
        raise InvalidGrant(
            f"{achievement_id!r} is repeatable: each award has a key, which grant() "
            "does not take. Award it with unlock() from an achievement that answers "
            "with the key."
        )
    ledger = get_ledger()
    outcome = ledger.grant(
        str(user.pk),
        achievement_id,
        level=grant_level_of(achievement_id, level),
        reason=reason_of(reason, "grant", InvalidGrant),
        actor=actor_of(actor, "grant", InvalidGrant),
    )
    transaction.on_commit(
        partial(_send_signals, user, [outcome]), using=ledger.alias, robust=True
    )
    return outcome


# For async code ---------------------------------------------------------------
#
# Each runs its sync form in the thread where Django runs sync code for the
# request (thread_sensitive), as Django's own a-prefixed methods do: the same
# database connection and transaction rules as in a sync view, so signals are
# still sent once the transaction commits.


async def aunlock(
    event: str, /, user: Any = MISSING, **state: Any
) -> list[Outcome | Progress]:
    """:func:`unlock`, awaitable from an async view or task."""
    return await sync_to_async(unlock, thread_sensitive=True)(event, user=user, **state)


async def arevoke(
    user: Any,
    achievement_id: str,
    *,
    reason: str,
    actor: Any = None,
    key: str | None = None,
) -> Revocation:
    """:func:`revoke`, awaitable from an async view or task."""
    return await sync_to_async(revoke, thread_sensitive=True)(
        user, achievement_id, reason=reason, actor=actor, key=key
    )


async def ahistory(user: Any, achievement_id: str | None = None) -> list[HistoryEntry]:
    """:func:`history`, awaitable from an async view or task."""
    return await sync_to_async(history, thread_sensitive=True)(user, achievement_id)


async def alevels(user: Any, at: Any = None) -> dict[str, int]:
    """:func:`levels`, awaitable from an async view or task."""
    return await sync_to_async(levels, thread_sensitive=True)(user, at)


async def aforget(user: Any) -> int:
    """:func:`forget`, awaitable from an async view or task."""
    return await sync_to_async(forget, thread_sensitive=True)(user)


async def agrant(
    user: Any,
    achievement_id: str,
    *,
    level: int | None = None,
    reason: str,
    actor: Any = None,
) -> Outcome:
    """:func:`grant`, awaitable from an async view or task."""
    return await sync_to_async(grant, thread_sensitive=True)(
        user, achievement_id, level=level, reason=reason, actor=actor
    )
