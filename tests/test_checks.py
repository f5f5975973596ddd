"""Every system check fires for the mistake it is about, and only then."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import connections

import hero
from hero import AchievementBase, AchievementUnlocked
from hero.conf import conf
from hero.exceptions import DuplicateAchievement


def ids() -> set[str]:
    return {m.id for m in run_checks() if m.id and m.id.startswith("hero.")}


def test_a_correct_project_has_no_errors() -> None:
    assert ids() == set()


def define_in_achievements_module(name: str, **attrs: Any) -> type:
    """Define a class as an achievements module would, so it registers itself."""
    attrs.setdefault("__module__", "tests.testapp.achievements")
    return type(name, (AchievementBase,), attrs)


def ok_unlock(self: Any, **state: Any) -> AchievementUnlocked | None:
    return None


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"title": "No id", "unlock": ok_unlock}, "hero.E001"),
        ({"id": "", "title": "Empty id", "unlock": ok_unlock}, "hero.E001"),
        ({"id": "x" * 256, "title": "Long id", "unlock": ok_unlock}, "hero.E001"),
        ({"id": "a\x00b", "title": "NUL in id", "unlock": ok_unlock}, "hero.E001"),
        ({"id": "a\ud800", "title": "Surrogate", "unlock": ok_unlock}, "hero.E001"),
        ({"id": "no_title", "unlock": ok_unlock}, "hero.E002"),
        ({"id": "no_unlock", "title": "No unlock"}, "hero.E003"),
        (
            {"id": "bad_events", "title": "t", "unlock": ok_unlock, "events": "a"},
            "hero.E004",
        ),
        (
            {"id": "bad_events2", "title": "t", "unlock": ok_unlock, "events": [1]},
            "hero.E004",
        ),
        (
            {"id": "e3", "title": "t", "unlock": ok_unlock, "events": ["a\x00"]},
            "hero.E004",
        ),
        (
            {"id": "e4", "title": "t", "unlock": ok_unlock, "events": ["e" * 256]},
            "hero.E004",
        ),
        (
            {"id": "bad_image", "title": "t", "unlock": ok_unlock, "image_locked": 3},
            "hero.E008",
        ),
        (
            {"id": "bad_steps", "title": "t", "unlock": ok_unlock, "steps": 0},
            "hero.E012",
        ),
        (
            {"id": "bad_steps2", "title": "t", "unlock": ok_unlock, "steps": "5"},
            "hero.E012",
        ),
        (
            # More than PostgreSQL's integer columns hold.
            {"id": "bad_steps3", "title": "t", "unlock": ok_unlock, "steps": 2**31},
            "hero.E012",
        ),
    ],
)
def test_achievement_class_mistakes(
    isolated_registry: Any, attrs: dict[str, Any], expected: str
) -> None:
    define_in_achievements_module("Broken", **attrs)
    assert ids() == {expected}


def test_duplicate_ids_defined_in_modules_are_reported_naming_both(
    isolated_registry: Any,
) -> None:
    define_in_achievements_module(
        "Copy", id="points", title="Points again", unlock=ok_unlock
    )
    (message,) = [m for m in run_checks() if m.id == "hero.E005"]
    assert "tests.testapp.achievements.Points" in message.msg
    assert "tests.testapp.achievements.Copy" in message.msg


def test_registering_a_duplicate_raises_naming_both(isolated_registry: Any) -> None:
    class Elsewhere(AchievementBase):
        id = "points"
        title = "Points elsewhere"

        def unlock(self, **state: Any) -> None:
            return None

    with pytest.raises(
        DuplicateAchievement,
        match=r"tests\.testapp\.achievements\.Points and .*Elsewhere",
    ):
        hero.achievements.register(Elsewhere)


def test_registering_the_same_class_twice_is_harmless(isolated_registry: Any) -> None:
    from tests.testapp.achievements import Points

    hero.achievements.register(Points)
    hero.achievements.register(Points)
    assert ids() == set()
    assert [a.id for a in isolated_registry].count("points") == 1


def test_abstract_bases_are_not_registered(isolated_registry: Any) -> None:
    define_in_achievements_module("Base", abstract=True)
    assert ids() == set()


@pytest.mark.parametrize(
    "levels",
    [
        (),
        "Bronze",
        ((1, "Bronze"), (1, "Again")),
        ((0, "Zero"),),
        ((1,),),
        (("1", "Bronze"),),
        ((1, ""),),
        ((True, "Bool"),),
        ((1, "Bronze"), (2**15, "More than PostgreSQL's smallint holds")),
    ],
)
def test_malformed_achievement_levels(settings: Any, levels: Any) -> None:
    settings.ACHIEVEMENT_LEVELS = levels
    assert ids() == {"hero.E006"}


@pytest.mark.parametrize(
    "name",
    [
        "ACHIEVEMENT_IMAGE_LOCKED",
        "ACHIEVEMENT_IMAGE_UNLOCKED",
        "ACHIEVEMENT_IMAGE_SECRET",
    ],
)
def test_image_settings_must_be_paths(settings: Any, name: str) -> None:
    setattr(settings, name, None)
    assert ids() == {"hero.E007"}


def test_hero_database_must_exist(settings: Any) -> None:
    settings.HERO_DATABASE = "elsewhere"
    assert ids() == {"hero.E009"}


@pytest.mark.filterwarnings(
    "ignore:Overriding setting DATABASES"
)  # checks only read it
def test_hero_database_must_be_a_supported_backend(settings: Any) -> None:
    settings.DATABASES = {
        **settings.DATABASES,
        "other": {"ENGINE": "django.db.backends.dummy", "NAME": "x"},
    }
    settings.HERO_DATABASE = "other"
    assert ids() == {"hero.E010"}


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize(
    "engine",
    [
        "django.db.backends.mysql",
        "django.db.backends.postgresql",
        "django.db.backends.sqlite3",
    ],
)
def test_hero_database_must_hold_the_users(settings: Any, engine: str) -> None:
    # The test router writes users to "default"; the store is elsewhere.
    settings.DATABASES = {
        **settings.DATABASES,
        "other": {"ENGINE": engine, "NAME": "x"},
    }
    settings.HERO_DATABASE = "other"
    assert ids() == {"hero.E015"}


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, {"hero.W002"}),
        ("DEFERRED", {"hero.W002"}),
        ("IMMEDIATE", set()),
        ("EXCLUSIVE", set()),
    ],
)
def test_sqlite_that_begins_transactions_as_a_reader_is_a_warning(
    settings: Any, mode: str | None, expected: set[str]
) -> None:
    alias = conf.HERO_DATABASE
    if connections[alias].vendor != "sqlite":
        pytest.skip("a check of SQLite's settings")
    # Arrange: the store's database with Django's default transactions, or
    # with a mode that takes the write lock at BEGIN.
    options = {**settings.DATABASES[alias].get("OPTIONS", {})}
    options.pop("transaction_mode", None)
    if mode is not None:
        options["transaction_mode"] = mode
    settings.DATABASES = {
        **settings.DATABASES,
        alias: {**settings.DATABASES[alias], "OPTIONS": options},
    }

    # Act / assert
    assert ids() == expected


def test_projection_mode(settings: Any) -> None:
    settings.HERO_PROJECTIONS = "sometimes"
    assert ids() == {"hero.E011"}


def test_the_largest_steps_and_level_both_databases_hold_are_accepted(
    isolated_registry: Any, settings: Any
) -> None:
    # PostgreSQL's integer (steps) and smallint (levels) columns hold these.
    settings.ACHIEVEMENT_LEVELS = ((1, "Bronze"), (2**15 - 1, "Highest"))
    define_in_achievements_module(
        "Long", id="long", title="Long", unlock=ok_unlock, steps=2**31 - 1
    )
    assert ids() == set()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("HERO_PUBLIC_PROFILES", "hero.E013"), ("HERO_PROFILES_BY_PK", "hero.E014")],
)
@pytest.mark.parametrize("value", ["False", "yes", 1, 0, None])
def test_profile_settings_are_true_or_false(
    settings: Any, name: str, expected: str, value: Any
) -> None:
    # Arrange: a value that could be meant either way ("False" is truthy).
    setattr(settings, name, value)

    # Act / assert: None is "not set"; anything else but a bool is an error.
    assert ids() == (set() if value is None else {expected})


def test_profiles_by_pk_without_public_profiles_is_a_warning(settings: Any) -> None:
    settings.HERO_PROFILES_BY_PK = True
    assert ids() == {"hero.W001"}

    settings.HERO_PUBLIC_PROFILES = True
    assert ids() == set()


@pytest.mark.parametrize("value", ["False", "yes", 1, 0])
def test_hero_notify_is_true_false_or_unset(settings: Any, value: Any) -> None:
    settings.HERO_NOTIFY = value
    assert ids() == {"hero.E016"}
