"""What hero accepts, judged in one place: event names, achievement ids, users,
moments, levels, step counts, an achievement's answer to ``unlock()``, the
state to record, revocations, backfilled awards and commands' arguments.

The public API (:mod:`hero.achievements`), backfills (:mod:`hero.backfill`),
the management commands and the system checks (:mod:`hero.checks`) all ask
this module, so that a value is accepted or refused the same way wherever it
comes from, and on every database. The checks report what is wrong at
start-up; the functions named ``check_*`` and those that turn a value into what
hero records (``*_of``, :func:`recorded_state`) raise hero's named errors
before anything is written.

Text that is recorded or looked up is refused when it holds a NUL character
(PostgreSQL refuses it) or a lone surrogate (it is not UTF-8, so no database
driver sends it); numbers that are recorded are bounded by PostgreSQL's column
types, the narrower of the two backends, so that SQLite refuses the same.

Nothing here is cached: levels are read through :data:`hero.conf.conf` on every
call, so ``override_settings`` is always seen.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeGuard

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import CommandError
from django.db import connections
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Model
from django.utils import timezone
from django.utils.functional import Promise

from hero.base import AchievementBase
from hero.conf import conf
from hero.exceptions import (
    HeroError,
    InvalidBackfill,
    InvalidEventName,
    InvalidLevel,
    InvalidMoment,
    InvalidRevocation,
    InvalidState,
    InvalidUnlockResult,
    InvalidUser,
    UnknownAchievement,
)
from hero.ledger import Decision
from hero.registry import registry
from hero.state import _DuplicateKey, json_safe, model_label
from hero.users import user_model, user_pk_adapter

#: Default of ``unlock()``'s ``user``, to tell a forgotten user from ``None``.
MISSING: Any = object()

#: Longest event name the ledger keeps (LedgerEntry.trigger).
MAX_EVENT_NAME = 255

#: Longest achievement id the catalog keeps (Achievement.id).
MAX_ACHIEVEMENT_ID = 255

#: Longest reason revoke() records (as long as the admin's revoke form takes).
MAX_REASON = 2000

#: Longest actor label revoke() records (LedgerEntry.actor).
MAX_ACTOR = 255

#: Longest key of an award of a repeatable achievement (its ledger column).
MAX_KEY = 255

#: (lowest, highest) value of each integer column type on PostgreSQL; SQLite
#: holds more, and is held to the same.
_INTEGER_RANGES = BaseDatabaseOperations.integer_field_ranges

#: Most steps progress may report or an achievement may declare (the
#: PositiveIntegerField columns that hold them).
MAX_STEPS = _INTEGER_RANGES["PositiveIntegerField"][1]

#: Highest level ACHIEVEMENT_LEVELS may have (PositiveSmallIntegerField).
MAX_LEVEL = _INTEGER_RANGES["PositiveSmallIntegerField"][1]

#: Most candidates a backfill writes in one transaction.
MAX_BATCH_SIZE = 1_000_000


def describe(value: object, limit: int = 60) -> str:
    """A caller's value as an error message shows it: its ``repr()``, cut to
    ``limit`` characters, and never an error of its own (a ``repr()`` may raise)."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object whose repr() raised>"
    return text if len(text) <= limit else text[:limit] + "..."


def text_problem(text: str) -> str | None:
    """What keeps ``text`` from being recorded or looked up on every database: a
    NUL character (PostgreSQL refuses it) or a lone surrogate (not UTF-8, so
    drivers refuse to send it); None when there is nothing."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (not valid UTF-8)"
    return None


def _is_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def is_whole(value: object, at_least: int) -> TypeGuard[int]:
    """An ``int`` (not a ``bool``) of at least ``at_least``."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= at_least


# Event names -----------------------------------------------------------------


def is_event_name(value: object) -> TypeGuard[str]:
    """What an achievement may list in ``events`` (system check hero.E004): a
    name that ``unlock()`` accepts."""
    return (
        _is_text(value) and len(value) <= MAX_EVENT_NAME and text_problem(value) is None
    )


def check_event(event: object) -> None:
    """Refuse an event name that ``unlock()`` cannot record, with InvalidEventName."""
    # is_event_name(), spelled out: every unlock() call runs this, and a call
    # that awards nothing must not pay for two more function calls (an ASCII
    # name, the usual one, costs one isascii() more than a NUL check).
    if not isinstance(event, str) or not event:
        raise InvalidEventName(
            "unlock() takes the name of what happened as a non-empty string, e.g. "
            f"unlock('points_awarded', user=request.user); got {describe(event)} "
            f"({type(event).__name__})."
        )
    if (
        len(event) > MAX_EVENT_NAME
        or "\x00" in event
        or (not event.isascii() and text_problem(event))
    ):
        raise InvalidEventName(
            f"unlock()'s event name must be at most {MAX_EVENT_NAME} characters with no "
            f"NUL character or lone surrogate; got {describe(event, 40)} "
            f"({len(event)} characters)."
        )


# Achievement ids -------------------------------------------------------------


def is_achievement_id(value: object) -> TypeGuard[str]:
    """What an achievement class may declare as its ``id`` (system check hero.E001)."""
    return (
        _is_text(value)
        and len(value) <= MAX_ACHIEVEMENT_ID
        and text_problem(value) is None
    )


def check_achievement_id(achievement_id: object) -> None:
    """Refuse what cannot name any achievement, with UnknownAchievement."""
    if not is_achievement_id(achievement_id):
        raise UnknownAchievement(
            f"No achievement has id {describe(achievement_id)}: ids are non-empty "
            f"strings of at most {MAX_ACHIEVEMENT_ID} characters, with no NUL "
            "character or lone surrogate, e.g. 'comments_50'."
        )


# Users -----------------------------------------------------------------------


def check_user(user: object, function: str = "unlock") -> None:
    """Refuse anything but a saved instance of the user model, with InvalidUser
    naming ``function``, the public function that was given it."""
    model = user_model()
    if isinstance(user, model):  # the usual case, first: every unlock() runs this
        if user.pk is None:
            raise InvalidUser(
                f"{function}() was given a user that is not saved yet (its pk is "
                "None): save the user first."
            )
        return
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
    raise InvalidUser(
        f"{function}() needs a {model._meta.label} instance as user, got "
        f"{describe(user)} ({type(user).__name__})."
    )


# Moments ---------------------------------------------------------------------


def aware(moment: datetime) -> datetime:
    """``moment``, taken to be in the current time zone if it is naive."""
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def moment_of(at: object, function: str = "levels") -> datetime | None:
    """The moment ``at`` names (None for now), or InvalidMoment saying how to
    pass one: a datetime, naive ones in the current time zone."""
    if at is None:
        return None
    if isinstance(at, datetime):
        return aware(at)
    if isinstance(at, date):
        hint = " For the end of a day, pass datetime.combine(day, time.max)."
    elif isinstance(at, str):
        hint = " Parse text first, e.g. django.utils.dateparse.parse_datetime(text)."
    else:
        hint = ""
    raise InvalidMoment(
        f"{function}() takes at= as a datetime, e.g. {function}(user, "
        f"at=timezone.now()); got {describe(at)} ({type(at).__name__}).{hint}"
    )


# Levels and steps ------------------------------------------------------------


def valid_levels(levels: object) -> bool:
    """Whether ``levels`` is a non-empty sequence of (number, name) pairs with
    distinct whole numbers from 1 to MAX_LEVEL (system check hero.E006)."""
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
        if not is_whole(number, 1) or number > MAX_LEVEL or not is_level_name(name):
            return False
        numbers.append(number)
    return len(set(numbers)) == len(numbers)


def configured_levels() -> list[tuple[int, str]]:
    """ACHIEVEMENT_LEVELS as (number, name) pairs, or ImproperlyConfigured naming
    the setting (system check hero.E006)."""
    return list(_checked_levels()[0])


#: The setting's value last checked, its pairs and its numbers.
_checked: tuple[object, tuple[tuple[int, str], ...], frozenset[int]] | None = None


def _checked_levels() -> tuple[tuple[tuple[int, str], ...], frozenset[int]]:
    """ACHIEVEMENT_LEVELS checked once per value of the setting (``conf``
    keeps one value until a setting changes), not on every award."""
    global _checked
    levels = conf.ACHIEVEMENT_LEVELS
    if _checked is not None and _checked[0] is levels:
        return _checked[1], _checked[2]
    if not valid_levels(levels):
        raise ImproperlyConfigured(
            f"ACHIEVEMENT_LEVELS is malformed: {levels!r} (system check hero.E006). "
            f"It must be a sequence of (number, name) pairs, numbers from 1 to "
            f"{MAX_LEVEL}, e.g. ((1, 'Bronze'),)."
        )
    pairs = tuple((number, name) for number, name in levels)
    _checked = (levels, pairs, frozenset(number for number, _ in pairs))
    return pairs, _checked[2]


def is_step_count(value: object) -> TypeGuard[int]:
    """What an achievement may declare as ``steps`` (system check hero.E012)."""
    return is_whole(value, 1) and value <= MAX_STEPS


# An achievement's answer -----------------------------------------------------


def level_of(achievement: AchievementBase, level: object) -> int:
    """``level`` if ACHIEVEMENT_LEVELS has it, or InvalidLevel listing the
    levels that do exist."""
    levels, allowed = _checked_levels()
    if isinstance(level, bool) or not isinstance(level, int) or level not in allowed:
        names = ", ".join(f"{n} ({name})" for n, name in levels)
        raise InvalidLevel(
            f"Achievement {achievement.id!r} answered with level {describe(level)}, which is "
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
        return Decision(
            achievement.id,
            level=level_of(achievement, result.level),
            key=award_key_of(achievement, result.key),
        )
    if isinstance(result, AchievementProgress):
        if is_repeatable(achievement):
            raise InvalidUnlockResult(
                f"{type(achievement).__qualname__}.unlock() reported progress, but the "
                "achievement is repeatable: it is awarded once per key, with "
                "AchievementUnlocked(level=N, key=...), and counts no steps."
            )
        total = getattr(achievement, "steps", None)
        if not is_step_count(total):
            raise InvalidUnlockResult(
                f"{type(achievement).__qualname__}.unlock() reported progress, but the "
                f"achievement declares no steps (steps = {describe(total)}; system "
                "check hero.E012). Set steps = N, the number of steps that completes "
                f"it, from 1 to {MAX_STEPS}."
            )
        steps = result.steps
        if not is_whole(steps, 0) or steps > MAX_STEPS:
            raise InvalidUnlockResult(
                f"{type(achievement).__qualname__}.unlock() reported steps="
                f"{describe(steps)}; steps must be a whole number from 0 to "
                f"{MAX_STEPS}."
            )
        lowest = min(number for number, _ in configured_levels())
        return Decision(achievement.id, level=lowest, steps=steps, total=total)
    raise InvalidUnlockResult(
        f"{type(achievement).__qualname__}.unlock() returned {describe(result)}; it must "
        "return AchievementUnlocked(level=N) to award level N, "
        "AchievementProgress(steps=k) to report progress, or None."
    )


def is_repeatable(achievement: object) -> bool:
    """Whether an achievement is awarded once per key (``repeatable = True``)."""
    return getattr(achievement, "repeatable", False) is True


def award_key_of(
    achievement: AchievementBase,
    key: object,
    where: str = "unlock()",
    error: type[HeroError] = InvalidUnlockResult,
) -> str | None:
    """The key of an award: None for an achievement that is not repeatable, the
    text naming the award (``"answer:123"``) for one that is; otherwise
    ``error`` saying which of the two was wrong and how to answer instead."""
    name = f"{type(achievement).__qualname__}.{where}"
    if not is_repeatable(achievement):
        if key is None:
            return None
        raise error(
            f"{name} answered with key={describe(key)}, but {achievement.id!r} is not "
            "repeatable, so it is held once. Set repeatable = True on the class to "
            "award it once per key, or answer without a key."
        )
    if key is None:
        raise error(
            f"{achievement.id!r} is repeatable, so {name} must name each award with "
            "a key, e.g. AchievementUnlocked(level=1, key='answer:123'): hero "
            "awards it once per key."
        )
    return key_text(key, name, error)


def key_text(key: object, name: str, error: type[HeroError]) -> str:
    """``key`` if it can be recorded as an award's key, else ``error``."""
    if not _is_text(key) or len(key) > MAX_KEY or text_problem(key) is not None:
        raise error(
            f"{name} gave the key {describe(key)}; a key must be a non-empty string "
            f"of at most {MAX_KEY} characters with no NUL character or lone "
            "surrogate, e.g. 'answer:123'."
        )
    return key


def revoked_key_of(achievement_id: str, key: object) -> str | None:
    """The key of the one award revoke() takes away (None: all of it), or
    InvalidRevocation when the achievement is not repeatable."""
    if key is None:
        return None
    name = "revoke()"
    if achievement_id in registry and not is_repeatable(registry.get(achievement_id)):
        raise InvalidRevocation(
            f"{name} was given key={describe(key)}, but {achievement_id!r} is not "
            "repeatable: it is held once, so revoke it without a key."
        )
    return key_text(key, name, InvalidRevocation)


# The state to record ---------------------------------------------------------


_compact = json.JSONEncoder(separators=(",", ":")).encode


def recorded_state(state: dict[str, Any], limit: int) -> dict[str, Any]:
    """The JSON record of ``state`` to store with an event, or InvalidState when
    it cannot be recorded faithfully: larger than ``limit`` bytes, holding text
    no database stores, keys that JSON would merge, or a value that cannot be
    converted at all (a ``repr()`` that raises, nesting too deep for it)."""
    safe: dict[str, Any] = {}
    for key, value in state.items():
        if key == "user":
            continue
        try:
            safe[key] = json_safe(value)
        except _DuplicateKey as error:
            _refuse_state(
                f"{_state_path(key)} has the keys {describe(error.first)} and "
                f"{describe(error.second)}, which are one key, {describe(error.key)}, "
                "once recorded (JSON keys are text)",
                "Give them keys that differ as text",
            )
        except RecursionError:
            _refuse_state(
                f"{_state_path(key)} is nested too deeply to convert",
                "Pass a flat value or an identifier instead",
            )
        except Exception as error:
            _refuse_state(
                f"converting {_state_path(key)} to JSON raised "
                f"{type(error).__name__} (its repr() or str() failed)",
                "Pass plain values (numbers, text, lists, dicts) or identifiers",
            )
        converted = safe[key]
        problem = _unstorable(key, "a state key")
        if problem is None and not (
            converted is None or isinstance(converted, (bool, int, float))
        ):
            problem = _unstorable(converted, _state_path(key))
        if problem:
            _refuse_state(
                problem, "Clean the value first, e.g. value.replace('\\x00', '')"
            )
    try:
        # ASCII (JSON's escapes), so its length in bytes.
        size = len(_compact(safe))
    except ValueError:  # an int of more digits than Python prints
        for key, value in safe.items():
            try:
                _compact(value)
            except ValueError as error:
                _refuse_state(
                    f"state[{describe(key)}] cannot be written as JSON ({error})",
                    "Pass it as text or as a smaller number",
                )
        raise
    if size > limit:
        sizes = {key: len(json.dumps(value)) for key, value in safe.items()}
        biggest = max(sizes, key=sizes.__getitem__)
        raise InvalidState(
            f"The state passed to unlock() takes {size} bytes as JSON, more than "
            f"HERO_MAX_STATE_BYTES ({limit}); the largest value is {biggest!r}. "
            "Pass identifiers (a model instance is recorded as 'app.model:pk') "
            "instead of large values, or raise HERO_MAX_STATE_BYTES."
        )
    return safe


def _state_path(key: object) -> str:
    return f"state[{describe(key)}]"


def _refuse_state(problem: str, fix: str) -> None:
    raise InvalidState(
        f"The state passed to unlock() cannot be recorded: {problem}. {fix}; "
        "nothing was written."
    )


def _unstorable(value: Any, path: str) -> str | None:
    """Where the JSON record ``value`` holds text that no database stores, or None."""
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{path} contains {problem}" if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable(key, f"a key in {path}") or _unstorable(
                item, f"{path}[{describe(key)}]"
            )
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable(item, f"{path}[{index}]")
            if found:
                return found
    return None


def is_level_name(value: object) -> bool:
    """A level's name in ACHIEVEMENT_LEVELS: a non-empty string, or a lazy
    translation of one (``gettext_lazy("Gold")``), so that a site can show its
    own level names in each language."""
    return _is_text(value) or (isinstance(value, Promise) and bool(str(value)))


# Changes made by hand (revoke, grant) ----------------------------------------


def reason_of(
    reason: object, function: str = "revoke", error: type[HeroError] = InvalidRevocation
) -> str:
    """The reason recorded with a change made by hand (stripped of surrounding
    whitespace), or ``error`` saying what a reason must be."""
    if not isinstance(reason, str) or not reason.strip():
        raise error(
            f"{function}() needs a reason, e.g. {function}(user, 'points', "
            "reason='contest winner')."
        )
    reason = reason.strip()
    problem = text_problem(reason)
    if len(reason) > MAX_REASON or problem:
        raise error(
            f"{function}()'s reason must be at most {MAX_REASON} characters with no "
            f"NUL character or lone surrogate; got {len(reason)} characters"
            f"{f' with {problem}' if problem else ''}. Shorten or clean it."
        )
    return reason


def actor_of(
    actor: object, function: str = "revoke", error: type[HeroError] = InvalidRevocation
) -> str | None:
    """Who made a change by hand, as the events record it: ``"app.model:pk"``
    for a model instance, the text of anything else, or None; else ``error``."""
    if actor is None:
        return None
    try:
        label = model_label(actor) if isinstance(actor, Model) else str(actor)
    except Exception:
        raise error(
            f"{function}()'s actor {describe(actor)} cannot be turned into text (its "
            "str() raised). Pass a model instance or a string."
        ) from None
    problem = text_problem(label)
    if len(label) > MAX_ACTOR or problem:
        raise error(
            f"{function}()'s actor must be a model instance or a label of at most "
            f"{MAX_ACTOR} characters with no NUL character or lone surrogate; got "
            f"{describe(label, 40)} ({len(label)} characters). Pass a shorter label."
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


# Backfills -------------------------------------------------------------------


def check_batch_size(batch_size: object) -> None:
    """Refuse a backfill's batch size out of range, with InvalidBackfill."""
    if not is_whole(batch_size, 1) or batch_size > MAX_BATCH_SIZE:
        raise InvalidBackfill(
            f"A backfill's batch size must be a whole number from 1 to "
            f"{MAX_BATCH_SIZE}; got {describe(batch_size)}."
        )


def backfilled_awards(
    achievement: AchievementBase,
) -> Callable[[object], tuple[str | None, int, datetime | None, str | None]]:
    """The reader of the items ``achievement.backfill()`` yields: each item's
    (user pk as events record it, level, when it took effect, key); the pk is
    None when it can be no user's, and InvalidBackfill (or InvalidLevel) says
    what an item must be. A repeatable achievement yields a fourth item, the
    award's key. What does not change from item to item (the achievement's
    name, the user model's pk column) is looked up once, not once per item."""
    name = f"{type(achievement).__qualname__}.backfill()"
    repeatable = is_repeatable(achievement)
    lengths = (2, 3, 4) if repeatable else (2, 3)
    pk_of = user_pk_reader()

    def award_of(
        item: object,
    ) -> tuple[str | None, int, datetime | None, str | None]:
        if not isinstance(item, (tuple, list)) or len(item) not in lengths:
            raise InvalidBackfill(
                f"{name} yielded {describe(item)}; it must yield (user_pk, level) or "
                "(user_pk, level, awarded_at) tuples"
                + (", and (user_pk, level, awarded_at, key)." if repeatable else ".")
            )
        user_pk, level, *rest = item
        level = level_of(achievement, level)
        if not rest and not repeatable:  # the common case: (user_pk, level)
            return pk_of(user_pk), level, None, None
        awarded_at = rest[0] if rest else None
        key = award_key_of(
            achievement,
            rest[1] if len(rest) > 1 else None,
            "backfill()",
            InvalidBackfill,
        )
        if awarded_at is not None:
            if not isinstance(awarded_at, datetime):
                raise InvalidBackfill(
                    f"{name} yielded awarded_at={describe(awarded_at)} "
                    f"({type(awarded_at).__name__}); it must be a datetime (when the "
                    "award took effect) or None (now)."
                )
            awarded_at = aware(awarded_at)
            try:
                in_utc = awarded_at.astimezone(UTC)
            except OverflowError:  # before year 1 or after 9999 in UTC
                in_utc = None
            if in_utc is None or in_utc > timezone.now():
                raise InvalidBackfill(
                    f"{name} yielded awarded_at={awarded_at.isoformat()}, which is not "
                    "in the past (from the year 1 in UTC); a backfill awards what users "
                    "earned before now."
                )
        return pk_of(user_pk), level, awarded_at, key

    return award_of


def user_pk_of(value: object) -> str | None:
    """``value`` as events record a user's pk (its text), or None when it can be
    no user's pk: text no database stores, or no value of the user model's pk
    column (not a number, or out of the column's range, for an integer pk)."""
    return user_pk_reader()(value)


def user_pk_reader() -> Callable[[object], str | None]:
    """:func:`user_pk_of` for the current user model, its pk column looked up
    once (a backfill checks every candidate with it)."""
    pk = user_model()._meta.pk
    assert pk is not None
    target = pk.target_field if pk.is_relation else pk
    bounds = _INTEGER_RANGES.get(target.get_internal_type())
    # An integer pk's column value is int() of its text, on every backend (no
    # connection looked up for it).
    convert = int if bounds else user_pk_adapter(connections[conf.HERO_DATABASE])
    low, high = bounds or (0, 0)

    def pk_of(value: object) -> str | None:
        try:
            text = str(value)
        except Exception:
            return None
        if text_problem(text):
            return None
        try:
            column_value = convert(text)
        except (ValueError, TypeError, ValidationError):
            return None
        if bounds and not low <= column_value <= high:
            return None
        return text

    return pk_of


# Commands' arguments -----------------------------------------------------------


def check_argument(name: str, value: str) -> None:
    """Refuse a command's argument holding text no database stores, with a
    CommandError naming the argument."""
    problem = text_problem(value)
    if problem:
        raise CommandError(
            f"{name} {describe(value)} contains {problem}. Type it again without "
            "it (bytes that are not UTF-8 on the command line arrive as lone "
            "surrogates)."
        )


def positive_seconds(text: str) -> float:
    """A command's number of seconds (argparse's ``type``): a positive, finite
    number, or an error that argparse reports with the argument's name."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, e.g. 600; got {text!r}"
        )
    return seconds
