"""System checks for what a site can get wrong when setting up hero.

Each has a stable id (``hero.E001`` ...), listed in docs/reference/checks.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections, router
from django.utils.connection import ConnectionDoesNotExist

from hero.base import AchievementBase
from hero.conf import conf
from hero.registry import registry
from hero.validation import (
    MAX_EVENT_NAME,
    MAX_LEVEL,
    MAX_STEPS,
    is_achievement_id,
    is_event_name,
    is_step_count,
    valid_levels,
)

#: The backends hero's store runs on, by Django's vendor name.
VENDORS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB or MySQL"}


def _check_store_database(alias: str) -> list[CheckMessage]:
    """The store's database: a backend hero supports, and the one users live in
    (hero's tables refer to the user model, and check that a user exists)."""
    engine = str(settings.DATABASES[alias].get("ENGINE", ""))
    vendor = _vendor(alias, engine)
    if vendor not in VENDORS:
        return [
            Error(
                f"hero's event store runs on {', '.join(VENDORS.values())}; "
                f"database {alias!r} uses {engine!r}.",
                hint="Point HERO_DATABASE at a SQLite, PostgreSQL, MariaDB or "
                "MySQL database that also holds your users.",
                id="hero.E010",
            )
        ]
    users_alias = router.db_for_write(get_user_model())
    if users_alias != alias:
        return [
            Error(
                f"HERO_DATABASE is {alias!r}, but users are written to {users_alias!r}.",
                hint="hero's tables refer to your user model, so its store must be "
                "in the database your users live in: set HERO_DATABASE to "
                f"{users_alias!r}.",
                id="hero.E015",
            )
        ]
    return _check_sqlite_transactions(alias) if vendor == "sqlite" else []


#: SQLite's transaction modes that take the write lock at ``BEGIN``.
_WRITING_MODES = {"IMMEDIATE", "EXCLUSIVE"}


def _check_sqlite_transactions(alias: str) -> list[CheckMessage]:
    """SQLite's transactions begun as writers: a transaction begun as a reader
    (Django's default, ``DEFERRED``) that reads and then writes, as a view's
    transaction around ``unlock()`` does, fails with "database is locked"
    instead of waiting when another connection writes meanwhile."""
    options = settings.DATABASES[alias].get("OPTIONS") or {}
    mode = str(options.get("transaction_mode") or "DEFERRED").upper()
    if mode in _WRITING_MODES:
        return []
    return [
        Warning(
            f"Database {alias!r} (SQLite) begins transactions as {mode}: a "
            "transaction that reads before unlock() writes fails with "
            "'database is locked' when another thread or process writes "
            "at the same time.",
            hint="Set 'transaction_mode': 'IMMEDIATE' in its OPTIONS (and, "
            "for several processes, WAL mode): see 'SQLite settings that suit "
            "the store' in hero's documentation.",
            id="hero.W002",
        )
    ]


def _vendor(alias: str, engine: str) -> str:
    """The backend's vendor name, from its connection when Django has one for
    the alias (third-party engines say theirs), else from the engine's path."""
    try:
        return str(connections[alias].vendor)
    except ConnectionDoesNotExist:
        module = engine.rsplit(".", 1)[-1]
        return {"sqlite3": "sqlite", "postgis": "postgresql"}.get(module, module)


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@register(Tags.models)
def check_achievements(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for cls in registry.classes():
        errors += _check_achievement(cls)
    for achievement_id, first, second in registry.conflicts:
        errors.append(
            Error(
                f"Achievement id {achievement_id!r} is claimed by both "
                f"{_name(first)} and {_name(second)}.",
                hint="Give one of them another id; ids must never change once awarded.",
                obj=second,
                id="hero.E005",
            )
        )
    return errors


def _check_achievement(cls: type[AchievementBase]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    achievement_id = getattr(cls, "id", None)
    if not is_achievement_id(achievement_id):
        errors.append(
            Error(
                f"{_name(cls)} has no valid 'id' (got {achievement_id!r}).",
                hint="Set id to a non-empty string of at most 255 characters, with "
                "no NUL character or lone surrogate, e.g. id = 'comments_50'. It "
                "must never change.",
                obj=cls,
                id="hero.E001",
            )
        )
    title = getattr(cls, "title", None)
    if not isinstance(title, str) or not title:
        errors.append(
            Error(
                f"{_name(cls)} has no 'title'.",
                hint="Set title to a non-empty string, e.g. title = '50 comments'.",
                obj=cls,
                id="hero.E002",
            )
        )
    if (
        not callable(getattr(cls, "unlock", None))
        or cls.unlock is AchievementBase.unlock
    ):
        errors.append(
            Error(
                f"{_name(cls)} does not define unlock(self, **state).",
                hint="Define unlock() to return AchievementUnlocked(level=N) or None.",
                obj=cls,
                id="hero.E003",
            )
        )
    events = getattr(cls, "events", None)
    if not isinstance(events, (list, tuple)) or not all(map(is_event_name, events)):
        errors.append(
            Error(
                f"{_name(cls)}.events must be a list of event names, got {events!r}.",
                hint="For example: events = ['comment_posted']. Each name is a "
                f"non-empty string of at most {MAX_EVENT_NAME} characters, with no "
                "NUL character or lone surrogate.",
                obj=cls,
                id="hero.E004",
            )
        )
    steps = getattr(cls, "steps", None)
    if steps is not None and not is_step_count(steps):
        errors.append(
            Error(
                f"{_name(cls)}.steps must be a whole number of at least 1, or None; "
                f"got {steps!r}.",
                hint="For example: steps = 10 (ten steps complete it); at most "
                f"{MAX_STEPS}.",
                obj=cls,
                id="hero.E012",
            )
        )
    for attribute in ("image_locked", "image_unlocked", "image_secret"):
        value = getattr(cls, attribute, None)
        if value is not None and not isinstance(value, str):
            errors.append(
                Error(
                    f"{_name(cls)}.{attribute} must be a static file path or None, "
                    f"got {value!r}.",
                    hint="For example: 'achievements/images/comments.png'.",
                    obj=cls,
                    id="hero.E008",
                )
            )
    return errors


@register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    levels = conf.ACHIEVEMENT_LEVELS
    if not valid_levels(levels):
        errors.append(
            Error(
                f"ACHIEVEMENT_LEVELS is malformed: {levels!r}.",
                hint="It must be a non-empty sequence of (number, name) pairs with "
                f"distinct whole numbers from 1 to {MAX_LEVEL}, e.g. "
                "((1, 'Bronze'), (2, 'Silver')).",
                id="hero.E006",
            )
        )
    for name in (
        "ACHIEVEMENT_IMAGE_LOCKED",
        "ACHIEVEMENT_IMAGE_UNLOCKED",
        "ACHIEVEMENT_IMAGE_SECRET",
    ):
        value = getattr(conf, name)
        if not isinstance(value, str) or not value:
            errors.append(
                Error(
                    f"{name} must be the path of a static file, got {value!r}.",
                    hint="For example: 'achievements/images/default-locked.jpg'.",
                    id="hero.E007",
                )
            )
    alias = conf.HERO_DATABASE
    if alias not in settings.DATABASES:
        errors.append(
            Error(
                f"HERO_DATABASE is {alias!r}, which is not in settings.DATABASES.",
                hint=f"Use one of: {', '.join(map(repr, settings.DATABASES))}.",
                id="hero.E009",
            )
        )
    else:
        errors += _check_store_database(alias)
    if conf.HERO_PROJECTIONS not in {"inline", "async"}:
        errors.append(
            Error(
                f"HERO_PROJECTIONS is {conf.HERO_PROJECTIONS!r}.",
                hint="Use 'inline' (the default) or 'async'.",
                id="hero.E011",
            )
        )
    notify = conf.as_set("HERO_NOTIFY")
    if notify is not None and not isinstance(notify, bool):
        errors.append(
            Error(
                f"HERO_NOTIFY must be True, False or None, got {notify!r}.",
                hint="Leave it unset (None: announce with HERO_PROJECTIONS = "
                "'async' only), or set it to True or False.",
                id="hero.E016",
            )
        )
    return errors


@register()
def check_profile_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Who may see a user's achievements: a value that is not a bool could be
    meant either way, so it is an error rather than read as true or false."""
    errors: list[CheckMessage] = []
    for name, check_id in (
        ("HERO_PUBLIC_PROFILES", "hero.E013"),
        ("HERO_PROFILES_BY_PK", "hero.E014"),
    ):
        value = conf.as_set(name)
        if value is not None and not isinstance(value, bool):
            errors.append(
                Error(
                    f"{name} must be True or False, got {value!r}.",
                    hint=f"Set {name} = True or False (the default is False).",
                    id=check_id,
                )
            )
    if conf.HERO_PROFILES_BY_PK and not conf.HERO_PUBLIC_PROFILES:
        errors.append(
            Warning(
                "HERO_PROFILES_BY_PK has no effect while HERO_PUBLIC_PROFILES is "
                "off: profiles are private.",
                hint="Set HERO_PUBLIC_PROFILES = True to show profiles to others, or "
                "remove HERO_PROFILES_BY_PK.",
                id="hero.W001",
            )
        )
    return errors
