"""What hero accepts, judged in one place: event names, achievement ids, users,
levels, step counts, and an achievement's answer to ``unlock()``.

The public API (:mod:`hero.achievements`), backfills (:mod:`hero.backfill`) and
the system checks (:mod:`hero.checks`) all ask this module, so that a value is
accepted or refused the same way wherever it comes from. The checks report
what is wrong at start-up; the functions named ``check_*`` and those that turn
an answer into a :class:`~hero.ledger.Decision` raise hero's named errors
before anything is written.

Nothing here is cached: levels are read through :data:`hero.conf.conf` on every
call, so ``override_settings`` is always seen.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model
from django.utils.functional import Promise

from hero.base import AchievementBase
from hero.conf import conf
from hero.exceptions import (
    HeroError,
    InvalidEventName,
    InvalidLevel,
    InvalidUnlockResult,
    InvalidUser,
    UnknownAchievement,
)
from hero.ledger import Decision
from hero.state import model_label
from hero.users import user_model

#: Default of ``unlock()``'s ``user``, to tell a forgotten user from ``None``.
MISSING: Any = object()

#: Longest event name the ledger keeps (LedgerEntry.trigger).
MAX_EVENT_NAME = 255

#: Longest achievement id the catalog keeps (Achievement.id).
MAX_ACHIEVEMENT_ID = 255


def _is_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def is_whole(value: object, at_least: int) -> TypeGuard[int]:
    """An ``int`` (not a ``bool``) of at least ``at_least``."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= at_least


# Event names -----------------------------------------------------------------


def is_event_name(value: object) -> TypeGuard[str]:
    """What an achievement may list in ``events`` (system check hero.E004)."""
    return _is_text(value)


def check_event(event: object) -> None:
    """Refuse an event name that ``unlock()`` cannot record, with InvalidEventName."""
    # is_event_name(), spelled out: every unlock() call runs this, and a call
    # that awards nothing must not pay for two more function calls.
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


# Achievement ids -------------------------------------------------------------


def is_achievement_id(value: object) -> TypeGuard[str]:
    """What an achievement class may declare as its ``id`` (system check hero.E001)."""
    return _is_text(value) and len(value) <= MAX_ACHIEVEMENT_ID


def check_achievement_id(achievement_id: object) -> None:
    """Refuse what cannot name any achievement, with UnknownAchievement."""
    if not _is_text(achievement_id):
        raise UnknownAchievement(
            f"No achievement has id {achievement_id!r}: ids are non-empty strings, "
            "e.g. 'comments_50'."
        )


# Users -----------------------------------------------------------------------


def check_user(user: object, function: str = "unlock") -> None:
    """Refuse anything but a saved instance of the user model, with InvalidUser
    naming ``function``, the public function that was given it."""
    if user is MISSING or user is None:
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


# Levels and steps ------------------------------------------------------------


def valid_levels(levels: object) -> bool:
    """Whether ``levels`` is a non-empty sequence of (number, name) pairs with
    distinct whole numbers of at least 1 (system check hero.E006)."""
    if (
        isinstance(levels, (str, bytes))
        or not isinstance(levels, (list, tuple))
        or not levels
    ):
        return False
    numbers = []
    for pair in levels:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return False
        number, name = pair
        if not is_whole(number, 1) or not is_level_name(name):
            return False
        numbers.append(number)
    return len(set(numbers)) == len(numbers)


def configured_levels() -> list[tuple[int, str]]:
    """ACHIEVEMENT_LEVELS as (number, name) pairs, or ImproperlyConfigured naming
    the setting (system check hero.E006)."""
    levels = conf.ACHIEVEMENT_LEVELS
    if not valid_levels(levels):
        raise ImproperlyConfigured(
            f"ACHIEVEMENT_LEVELS is malformed: {levels!r} (system check hero.E006). "
            "It must be a sequence of (number, name) pairs, e.g. ((1, 'Bronze'),)."
        )
    return [(number, name) for number, name in levels]


def is_step_count(value: object) -> TypeGuard[int]:
    """What an achievement may declare as ``steps`` (system check hero.E012)."""
    return is_whole(value, 1)


# An achievement's answer -----------------------------------------------------


def level_of(achievement: AchievementBase, level: object) -> int:
    """``level`` if ACHIEVEMENT_LEVELS has it, or InvalidLevel listing the
    levels that do exist."""
    levels = configured_levels()
    allowed = [number for number, _ in levels]
    if isinstance(level, bool) or not isinstance(level, int) or level not in allowed:
        names = ", ".join(f"{n} ({name})" for n, name in levels)
        raise InvalidLevel(
            f"Achievement {achievement.id!r} answered with level {level!r}, which is "
            f"not in ACHIEVEMENT_LEVELS. Allowed levels: {names}."
        )
    return level


def decision_of(achievement: AchievementBase, result: object) -> Decision:
    """The decision an achievement's ``unlock()`` answer asks for, or
    InvalidUnlockResult (or InvalidLevel) saying how to answer instead."""
    # hero.models needs the app registry ready, and this module is imported by
    # hero.achievements, which a site may import before then (from its apps.py).
    from hero.models import AchievementProgress, AchievementUnlocked

    if isinstance(result, AchievementUnlocked):
        return Decision(achievement.id, level=level_of(achievement, result.level))
    if isinstance(result, AchievementProgress):
        total = getattr(achievement, "steps", None)
        if not is_step_count(total):
            raise InvalidUnlockResult(
                f"{type(achievement).__qualname__}.unlock() reported progress, but the "
                f"achievement declares no steps (steps = {total!r}). Set steps = N, "
                "the number of steps that completes it."
            )
        steps = result.steps
        if not is_whole(steps, 0):
            raise InvalidUnlockResult(
                f"{type(achievement).__qualname__}.unlock() reported steps={steps!r}; "
                "steps must be a whole number of at least 0."
            )
        lowest = min(number for number, _ in configured_levels())
        return Decision(achievement.id, level=lowest, steps=steps, total=total)
    raise InvalidUnlockResult(
        f"{type(achievement).__qualname__}.unlock() returned {result!r}; it must "
        "return AchievementUnlocked(level=N) to award level N, "
        "AchievementProgress(steps=k) to report progress, or None."
    )


def is_level_name(value: object) -> bool:
    """A level's name in ACHIEVEMENT_LEVELS: a non-empty string, or a lazy
    translation of one (``gettext_lazy("Gold")``), so that a site can show its
    own level names in each language."""
    return _is_text(value) or (isinstance(value, Promise) and bool(str(value)))


# Changes made by hand --------------------------------------------------------


def reason_of(reason: object, function: str, error: type[HeroError]) -> str:
    """The reason to record with a change made by hand, stripped; ``error``
    when it is missing, blank, or holds a NUL character (PostgreSQL refuses it)."""
    if not _is_text(reason) or not reason.strip() or "\x00" in reason:
        raise error(
            f"{function}() needs a reason without NUL characters, e.g. "
            f"{function}(user, 'points', reason='contest winner')."
        )
    return reason.strip()


def actor_of(actor: object, function: str, error: type[HeroError]) -> str | None:
    """Who made a change by hand, as the events record it: "app_label.model:pk"
    for a model instance, the text given, or None; ``error`` for a label the
    ledger cannot keep (longer than 255 characters, or with a NUL)."""
    if actor is None:
        return None
    label = model_label(actor) if isinstance(actor, Model) else str(actor)
    if len(label) > 255 or "\x00" in label:
        raise error(
            f"{function}()'s actor must be a model instance or a label of at most "
            "255 characters with no NUL character."
        )
    return label


def grant_level_of(achievement_id: str, level: object) -> int:
    """The level grant() awards: the lowest of ACHIEVEMENT_LEVELS when none is
    given, otherwise one that ACHIEVEMENT_LEVELS has (InvalidLevel if not)."""
    numbers = sorted(number for number, _ in configured_levels())
    if level is None:
        return numbers[0]
    if not is_whole(level, 1) or level not in numbers:
        raise InvalidLevel(
            f"grant() cannot grant {achievement_id!r} at level {level!r}: the levels "
            f"of ACHIEVEMENT_LEVELS are {numbers}, e.g. level={numbers[-1]}."
        )
    return level
