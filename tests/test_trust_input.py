"""Bad input: a clear error and nothing written, or, for state that JSON cannot
hold, a faithful record and no crash.

Cases already in tests/test_unlock.py, test_checks.py, test_revocation.py,
test_audit.py and test_backfill.py are not repeated; each test here checks
every hero table (store, tracking, catalog, read tables, ledger) and hero's
signals, not only the events.
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils.translation import gettext_lazy

import hero
from hero import AchievementBase, AchievementMeta, AchievementUnlocked
from hero.backfill import backfill
from hero.events import Outcome, UserAchievement
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
from hero.models import AchievementProgress, LedgerEntry
from tests.conftest import Backend
from tests.trust_helpers import (
    Unprintable,
    captured_signals,
    children,
    domain_events,
    nested,
    table_snapshot,
)


@pytest.fixture
def unchanged(backend: Backend) -> Iterator[list[Any]]:
    """Asserts, after the test, that no hero table changed and no signal was sent."""
    before = table_snapshot(backend.alias)
    with captured_signals() as sent:
        yield sent
    assert sent == []
    assert table_snapshot(backend.alias) == before


def award_events() -> list[Any]:
    return [e for e in domain_events() if isinstance(e, UserAchievement.Event)]


def projected_and_verified(backend: Backend, mode: str) -> None:
    """In async mode, a hero_project worker (a child) catches up; then
    hero_verify passes."""
    if mode == "async":
        with children() as started:
            worker = started.manage(
                backend.alias,
                "hero_project",
                "--once",
                "--timeout",
                "60",
                HERO_PROJECTIONS="async",
            )
            assert worker.wait(timeout=120) == 0, worker.output()
    call_command("hero_verify", stdout=io.StringIO())


# Users ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["autocommit", "in_transaction"])
def test_a_user_deleted_meanwhile_is_refused_clearly(
    backend: Backend, make_user: Any, where: str
) -> None:
    # Arrange: a user object whose row another request has just deleted.
    other = make_user()
    user = make_user()
    type(user)._default_manager.using(backend.alias).filter(pk=user.pk).delete()
    before = table_snapshot(backend.alias)

    # Act / assert: unlock refuses it at once, naming the user (in a caller's
    # transaction: before the caller commits).
    with pytest.raises(InvalidUser, match=str(user.pk)):
        if where == "autocommit":
            hero.achievements.unlock("reports", user=user, level=1)
        else:
            with transaction.atomic(using=backend.alias):
                other.first_name = "kept"
                other.save(using=backend.alias)
                hero.achievements.unlock("reports", user=user, level=1)
    assert table_snapshot(backend.alias) == before


@pytest.mark.django_db(transaction=True)
def test_a_caller_that_catches_a_deleted_user_goes_on_and_commits_its_own_work(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: a user object whose row another request has just deleted, and
    # the caller's own work before the call.
    other = make_user()
    user = make_user()
    type(user)._default_manager.using(backend.alias).filter(pk=user.pk).delete()
    before = table_snapshot(backend.alias)

    # Act: the caller catches the refusal and goes on in its transaction.
    with transaction.atomic(using=backend.alias):
        other.first_name = "before"
        other.save(using=backend.alias)
        with pytest.raises(InvalidUser, match=str(user.pk)):
            hero.achievements.unlock("reports", user=user, level=1)
        other.last_name = "after"
        other.save(using=backend.alias)
        hero.achievements.unlock("reports", user=other, level=1)

    # Assert: the caller's work and its award of the other user committed;
    # nothing of the refused call was; the chain verifies.
    other.refresh_from_db(using=backend.alias)
    assert (other.first_name, other.last_name) == ("before", "after")
    holdings = AchievementUnlocked.objects.using(backend.alias)
    assert list(holdings.values_list("user_id", "level")) == [(other.pk, 1)]
    after = table_snapshot(backend.alias)
    assert len(after["hero_stored_event"]) == len(before["hero_stored_event"]) + 1
    ledger = LedgerEntry.objects.using(backend.alias)
    assert not ledger.filter(user_id=user.pk).exists()
    call_command("hero_verify", stdout=io.StringIO())


# Levels -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "level",
    [None, -1, 10**20, "Gold", Decimal(2), 2 + 0j],
    ids=["none", "negative", "huge", "level-name", "decimal", "complex"],
)
def test_a_level_of_the_wrong_type_or_range_is_refused(
    backend: Backend, make_user: Any, level: Any
) -> None:
    # Arrange: a user who holds level 1.
    user = make_user()
    hero.achievements.unlock("reports", user=user, level=1)
    before = table_snapshot(backend.alias)

    # Act / assert: InvalidLevel names the achievement, the value and the allowed
    # levels; nothing of the call is written.
    with captured_signals() as sent, pytest.raises(InvalidLevel) as error:
        hero.achievements.unlock("reports", user=user, level=level)
    assert f"'awards_first' answered with level {level!r}" in str(error.value)
    assert "Allowed levels: 1 (Bronze), 2 (Silver), 3 (Gold), 4 (Diamond)" in str(
        error.value
    )
    assert table_snapshot(backend.alias) == before
    assert sent == []


@pytest.mark.django_db
def test_an_unlock_returning_achievement_unlocked_without_level_is_refused(
    backend: Backend, make_user: Any, isolated_registry: Any, unchanged: list[Any]
) -> None:
    @hero.achievements.register
    class Levelless(AchievementBase):
        id = "levelless"
        title = "Forgets the level"
        events = ["levelless"]

        def unlock(self, **state: Any) -> AchievementUnlocked:
            return AchievementUnlocked()

    with pytest.raises(InvalidLevel, match="'levelless' answered with level None"):
        hero.achievements.unlock("levelless", user=make_user())


@pytest.mark.parametrize("levels", [None, 5, [[1, "Bronze"], 2]])
def test_more_malformed_achievement_levels_fire_check_e006(
    settings: Any, levels: Any
) -> None:
    settings.ACHIEVEMENT_LEVELS = levels
    assert [m.id for m in run_checks() if m.id.startswith("hero.")] == ["hero.E006"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "levels", [None, 5, ((1,),), "Bronze"], ids=["none", "int", "short-pair", "string"]
)
def test_unlock_with_malformed_achievement_levels_names_the_setting(
    backend: Backend, make_user: Any, settings: Any, levels: Any
) -> None:
    # Arrange: the project ignored check hero.E006.
    user = make_user()
    settings.ACHIEVEMENT_LEVELS = levels
    before = table_snapshot(backend.alias)

    # Act / assert: a configuration error naming the setting; nothing written.
    with pytest.raises((ImproperlyConfigured, HeroError), match="ACHIEVEMENT_LEVELS"):
        hero.achievements.unlock("reports", user=user, level=1)
    assert table_snapshot(backend.alias) == before


# State that JSON cannot hold as it is -------------------------------------------


class Colour(enum.IntEnum):
    RED = 2


def _recursive() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "recorded"),
    [
        (b"\x00\xff", "b'\\x00\\xff'"),
        ({"tags": {"a"}}, {"tags": ["a"]}),
        ({(1, 2): "pair"}, {"(1, 2)": "pair"}),
        (Decimal("1.10"), "1.10"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Colour.RED, 2),
        (10**40, 10**40),
        (float("-inf"), "-inf"),
        (dt.date(2026, 2, 3), "2026-02-03"),
        (dt.timedelta(seconds=90), "datetime.timedelta(seconds=90)"),
        (gettext_lazy("Hello"), "'Hello'"),
        (range(3), "range(0, 3)"),
    ],
    ids=[
        "bytes",
        "set-in-dict",
        "tuple-key",
        "decimal",
        "uuid",
        "int-enum",
        "huge-int",
        "infinity",
        "date",
        "timedelta",
        "lazy-string",
        "range",
    ],
)
def test_state_json_cannot_hold_is_recorded_as_documented(
    backend: Backend, make_user: Any, value: Any, recorded: Any
) -> None:
    # Act: the value goes into unlock()'s state.
    user = make_user()
    outcomes = hero.achievements.unlock("reports", user=user, level=1, value=value)

    # Assert: awarded; the event and its ledger row hold the same JSON-safe record.
    assert outcomes == [Outcome("awards_first", 1, None)]
    (event,) = award_events()
    assert event.state == {"level": 1, "value": recorded}
    entry = LedgerEntry.objects.using(backend.alias).get(user=user)
    assert entry.personal_values()["state"] == event.state
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_deeply_nested_and_self_containing_state_is_cut_off_not_crashing(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    nested: Any = "bottom"
    for _ in range(200):
        nested = [nested]

    hero.achievements.unlock(
        "reports", user=user, level=1, loop=_recursive(), deep=nested
    )

    (event,) = award_events()
    # Past 20 levels a value is recorded as its repr.
    depth, value = 0, event.state["loop"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert depth == 21 and value == "[[...]]"
    assert isinstance(event.state["deep"], list)
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db
def test_a_lone_surrogate_in_state_is_recorded_or_refused_clearly(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    before = table_snapshot(backend.alias)
    try:
        hero.achievements.unlock("reports", user=user, level=1, name="a\ud800b")
    except InvalidState as error:
        assert "'name'" in str(error)
        assert table_snapshot(backend.alias) == before
    else:
        (event,) = award_events()
        assert "a" in event.state["name"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("where", "mode"), [("value", "inline"), ("value", "async"), ("key", "inline")]
)
def test_a_nul_character_in_state_is_recorded_or_refused_clearly(
    backend: Backend,
    make_user: Any,
    settings: Any,
    mode: str,
    where: str,
) -> None:
    # Arrange / act: a form field with a NUL character goes into the state.
    settings.HERO_PROJECTIONS = mode
    user = make_user()
    state = {"note": "a\x00b"} if where == "value" else {"notes": {"a\x00b": 1}}
    before = table_snapshot(backend.alias)
    try:
        outcomes = hero.achievements.unlock("reports", user=user, level=1, **state)
    except InvalidState as error:
        # Refused before anything is written, naming the value: acceptable, clear.
        assert repr(next(iter(state))) in str(error)
        assert table_snapshot(backend.alias) == before
        return

    # Assert: recorded; the read tables follow (inline, or once the worker ran).
    assert outcomes == [Outcome("awards_first", 1, None)]
    projected_and_verified(backend, mode)
    assert LedgerEntry.objects.using(backend.alias).filter(user=user).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (nested(10_000), "is nested too deeply"),
        (Unprintable(), "raised RuntimeError"),
        ({Unprintable(): 1}, "raised RuntimeError"),
        (10**5000, "cannot be written as JSON"),
    ],
    ids=["10000-levels-deep", "repr-raises", "key-str-raises", "int-of-5000-digits"],
)
def test_state_that_cannot_be_converted_is_refused_naming_the_key(
    backend: Backend, make_user: Any, unchanged: list[Any], value: Any, problem: str
) -> None:
    # Act / assert: a hero error naming the key and the problem; nothing written.
    with pytest.raises(InvalidState, match=rf"state\['odd'\] .*{problem}"):
        hero.achievements.unlock("reports", user=make_user(), level=1, odd=value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ({1: "int-key", "1": "str-key"}, "1 and '1'"),
        ({"True": "str-key", True: "bool-key"}, "'True' and True"),
        ({None: "none", "x": {"None": 1}, "None": 2}, "None and 'None'"),
    ],
    ids=["int-and-str", "str-and-bool", "none-and-str"],
)
def test_state_keys_that_json_would_merge_are_refused(
    backend: Backend, make_user: Any, unchanged: list[Any], value: Any, keys: str
) -> None:
    # Act / assert: refused rather than recording one value and dropping the other.
    with pytest.raises(InvalidState, match=f"has the keys {keys}"):
        hero.achievements.unlock("reports", user=make_user(), level=1, tags=value)


# Huge state -------------------------------------------------------------------


@pytest.mark.django_db
def test_state_of_exactly_the_limit_is_recorded_and_one_byte_more_is_refused(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    # Arrange: a 100-byte limit; {"level":1,"pad":""} is 20 bytes as compact JSON.
    settings.HERO_MAX_STATE_BYTES = 100
    user = make_user()
    before = table_snapshot(backend.alias)

    # Act / assert: one byte over is refused and writes nothing ...
    with pytest.raises(
        InvalidState,
        match="takes 101 bytes as JSON, more than HERO_MAX_STATE_BYTES \\(100\\)",
    ):
        hero.achievements.unlock("reports", user=user, level=1, pad="x" * 81)
    assert table_snapshot(backend.alias) == before
    # ... and exactly the limit is recorded.
    assert hero.achievements.unlock("reports", user=user, level=1, pad="x" * 80)
    (event,) = award_events()
    assert event.state == {"level": 1, "pad": "x" * 80}


@pytest.mark.django_db
def test_many_small_values_over_the_limit_are_refused_naming_the_largest(
    backend: Backend, make_user: Any, settings: Any, unchanged: list[Any]
) -> None:
    settings.HERO_MAX_STATE_BYTES = 1_000
    state = {f"field{i}": "y" * 30 for i in range(40)}
    state["field7"] = "z" * 60
    with pytest.raises(InvalidState, match="the largest value is 'field7'"):
        hero.achievements.unlock("score_changed", user=make_user(), points=10, **state)


@pytest.mark.django_db
def test_huge_state_of_a_call_only_logged_is_refused(
    backend: Backend, make_user: Any, settings: Any, unchanged: list[Any]
) -> None:
    # A call no achievement listens to, with the trigger log on, is still checked.
    settings.HERO_RECORD_TRIGGERS = True
    settings.HERO_MAX_STATE_BYTES = 1_000
    with pytest.raises(InvalidState, match="largest value is 'page'"):
        hero.achievements.unlock("nobody_listens", user=make_user(), page="p" * 5_000)


# Event names ------------------------------------------------------------------


class Events(enum.StrEnum):
    SCORE = "score_changed"


@pytest.mark.django_db
def test_a_str_enum_event_name_is_recorded_as_a_plain_string(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    assert hero.achievements.unlock(Events.SCORE, user=user, points=10) == [
        Outcome("points", 1, None)
    ]
    (event,) = award_events()
    assert event.trigger == "score_changed" and type(event.trigger) is str
    call_command("hero_verify", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["inline", "async"])
@pytest.mark.parametrize(
    "event", ["e" * 256, "a\x00b"], ids=["256-characters", "nul-character"]
)
def test_an_event_name_the_ledger_cannot_hold_is_refused_or_recorded(
    backend: Backend,
    make_user: Any,
    settings: Any,
    isolated_registry: Any,
    mode: str,
    event: str,
) -> None:
    # Arrange: an achievement listening to the event; the trigger log is on too.
    settings.HERO_PROJECTIONS = mode
    settings.HERO_RECORD_TRIGGERS = True

    class Listens(AchievementBase):
        id = "listens"
        title = "Listens"
        events = [event]

        def unlock(self, **state: Any) -> AchievementUnlocked:
            return AchievementUnlocked(level=1)

    hero.achievements.register(Listens)
    user = make_user()
    before = table_snapshot(backend.alias)

    # Act: refused up front (InvalidEventName), or recorded and projected.
    try:
        outcomes = hero.achievements.unlock(event, user=user)
    except InvalidEventName:
        assert table_snapshot(backend.alias) == before
        return
    assert outcomes == [Outcome("listens", 1, None)]
    projected_and_verified(backend, mode)


# Unknown achievements ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("achievement_id", [123, b"points"], ids=["int", "bytes"])
def test_revoke_and_history_refuse_an_achievement_id_that_is_not_a_string(
    backend: Backend, make_user: Any, achievement_id: Any
) -> None:
    user = make_user()
    hero.achievements.unlock("reports", user=user, level=1)
    before = table_snapshot(backend.alias)

    with pytest.raises(UnknownAchievement, match=repr(achievement_id)):
        hero.achievements.revoke(user, achievement_id, reason="test")
    with pytest.raises(UnknownAchievement, match=repr(achievement_id)):
        hero.achievements.history(user, achievement_id)
    assert table_snapshot(backend.alias) == before


@pytest.mark.django_db
def test_history_of_an_unknown_achievement_is_empty_and_writes_nothing(
    backend: Backend, make_user: Any, unchanged: list[Any]
) -> None:
    assert hero.achievements.history(make_user(), "no_such_achievement") == []


# Duplicate achievement ids -------------------------------------------------------


@pytest.mark.django_db
def test_after_a_duplicate_id_the_first_class_keeps_it(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    # Arrange: a second class claims "points", once by being defined in an
    # achievements module (a conflict for check hero.E005), once explicitly.
    asked: list[str] = []

    def copy_unlock(self: Any, **state: Any) -> AchievementUnlocked:
        asked.append(type(self).__name__)
        return AchievementUnlocked(level=4)

    AchievementMeta(
        "Copy",
        (AchievementBase,),
        {
            "__module__": "tests.testapp.achievements",
            "id": "points",
            "title": "Copy",
            "events": ["score_changed"],
            "unlock": copy_unlock,
        },
    )

    class Explicit(AchievementBase):
        id = "points"
        title = "Explicit copy"
        events = ["score_changed"]
        unlock = copy_unlock

    with pytest.raises(
        HeroError, match=r"tests\.testapp\.achievements\.Points and .*Explicit"
    ):
        hero.achievements.register(Explicit)

    # Act: the event both copies listen to.
    outcomes = hero.achievements.unlock("score_changed", user=make_user(), points=10)

    # Assert: only the original was asked; the conflict is still reported.
    assert outcomes == [Outcome("points", 1, None)]
    assert asked == []
    assert type(hero.achievements.get("points")).__qualname__ == "Points"
    assert [m.id for m in run_checks() if m.id.startswith("hero.")] == ["hero.E005"]


# Text that no database stores --------------------------------------------------

#: Each entry point that records or looks up text, called with ``text`` in one
#: argument: (call, the error it raises).
TEXT_ENTRY_POINTS: dict[str, tuple[Any, type[Exception]]] = {
    "revoke-reason": (
        lambda user, text: hero.achievements.revoke(user, "awards_first", reason=text),
        InvalidRevocation,
    ),
    "revoke-actor": (
        lambda user, text: hero.achievements.revoke(
            user, "awards_first", reason="cheating", actor=text
        ),
        InvalidRevocation,
    ),
    "revoke-achievement-id": (
        lambda user, text: hero.achievements.revoke(user, text, reason="cheating"),
        UnknownAchievement,
    ),
    "history-achievement-id": (
        lambda user, text: hero.achievements.history(user, text),
        UnknownAchievement,
    ),
    "unlock-event-logged": (
        lambda user, text: hero.achievements.unlock(text, user=user),
        InvalidEventName,
    ),
    "hero_audit-user": (
        lambda user, text: call_command("hero_audit", text, stdout=io.StringIO()),
        CommandError,
    ),
    "hero_audit-achievement": (
        lambda user, text: call_command(
            "hero_audit", user.username, "--achievement", text, stdout=io.StringIO()
        ),
        CommandError,
    ),
    "hero_audit-as-of": (
        lambda user, text: call_command(
            "hero_audit", user.username, "--as-of", text, stdout=io.StringIO()
        ),
        CommandError,
    ),
    "hero_backfill-achievement-id": (
        lambda user, text: call_command("hero_backfill", text, stdout=io.StringIO()),
        CommandError,
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("where", sorted(TEXT_ENTRY_POINTS))
@pytest.mark.parametrize(
    ("text", "problem"),
    [("a\ud800b", "lone surrogate"), ("a\x00b", "NUL character")],
    ids=["lone-surrogate", "nul"],
)
def test_text_no_database_stores_is_refused_at_every_entry_point(
    backend: Backend,
    make_user: Any,
    settings: Any,
    where: str,
    text: str,
    problem: str,
) -> None:
    # Arrange: a user who holds an achievement (so that revoke() would write);
    # the trigger log is on (so that unlock() would write, whatever listens).
    settings.HERO_RECORD_TRIGGERS = True
    user = make_user()
    hero.achievements.unlock("reports", user=user, level=1)
    call, error = TEXT_ENTRY_POINTS[where]
    before = table_snapshot(backend.alias)

    # Act / assert: hero's error (a CommandError from a command) naming the
    # problem, on both databases alike; nothing is written.
    with captured_signals() as sent, pytest.raises(error, match=problem):
        call(user, text)
    assert table_snapshot(backend.alias) == before
    assert sent == []


# Moments ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("at", "hint"),
    [
        ("2024-01-01", "parse_datetime"),
        (20240101, "got 20240101 \\(int\\)"),
        (dt.date(2024, 1, 1), "datetime.combine"),
    ],
    ids=["text", "int", "date"],
)
def test_levels_at_a_moment_that_is_not_a_datetime_is_refused(
    backend: Backend, make_user: Any, unchanged: list[Any], at: Any, hint: str
) -> None:
    with pytest.raises(InvalidMoment, match=f"takes at= as a datetime.*{hint}"):
        hero.achievements.levels(make_user(), at=at)


# Step counts --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("steps", [2**31, 2**40, 2**70])
def test_progress_beyond_what_both_databases_hold_is_refused(
    backend: Backend, make_user: Any, unchanged: list[Any], steps: int
) -> None:
    # PostgreSQL's integer columns hold up to 2**31 - 1; SQLite is held to it.
    with pytest.raises(InvalidUnlockResult, match="from 0 to 2147483647"):
        hero.achievements.unlock("chapter_read", user=make_user(), chapters=steps)


@pytest.mark.django_db
def test_the_most_steps_both_databases_hold_are_recorded(
    backend: Backend, make_user: Any
) -> None:
    # Act: the largest step count, on an achievement of five steps.
    user = make_user()
    hero.achievements.unlock("chapter_read", user=user, chapters=2**31 - 1)

    # Assert: recorded and projected on both databases.
    progress = AchievementProgress.objects.using(backend.alias).get(user=user)
    assert progress.steps == 2**31 - 1
    assert hero.achievements.levels(user) == {"bookworm": 1}
    call_command("hero_verify", stdout=io.StringIO())


# Revocations --------------------------------------------------------------------


class Nameless:
    """An actor whose str() raises."""

    def __str__(self) -> str:
        raise RuntimeError("str() failed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"reason": "x" * 2001}, "at most 2000 characters.*got 2001 characters"),
        (
            {"reason": "x" * 5_000_000},
            "at most 2000 characters.*got 5000000 characters",
        ),
        ({"reason": "ok", "actor": "a" * 256}, "label of at most 255 characters"),
        ({"reason": "ok", "actor": Nameless()}, "its str\\(\\) raised"),
    ],
    ids=["reason-2001", "reason-5MB", "actor-256", "actor-str-raises"],
)
def test_revoke_refuses_a_reason_or_actor_it_cannot_record(
    backend: Backend, make_user: Any, arguments: dict[str, Any], problem: str
) -> None:
    # Arrange: a user who holds the achievement.
    user = make_user()
    hero.achievements.unlock("reports", user=user, level=1)
    before = table_snapshot(backend.alias)

    # Act / assert: refused, naming the limit; nothing written.
    with pytest.raises(InvalidRevocation, match=problem):
        hero.achievements.revoke(user, "awards_first", **arguments)
    assert table_snapshot(backend.alias) == before


@pytest.mark.django_db
def test_revoke_records_a_reason_and_actor_of_the_longest_lengths(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    hero.achievements.unlock("reports", user=user, level=1)

    # Surrounding whitespace is stripped before the length is counted.
    hero.achievements.revoke(
        user, "awards_first", reason=f"  {'r' * 2000}\n", actor="a" * 255
    )

    entry = LedgerEntry.objects.using(backend.alias).get(kind="revoked")
    values = entry.personal_values()
    assert (len(values["reason"]), len(values["actor"])) == (2000, 255)


# Backfills ----------------------------------------------------------------------


def backfilling(*items: Any) -> AchievementBase:
    """A registered achievement whose backfill() yields ``items``."""

    @hero.achievements.register
    class Yields(AchievementBase):
        id = "yields"
        title = "Yields what it is given"
        events = ["never_sent"]

        def unlock(self, **state: Any) -> None:
            return None

        def backfill(self) -> Any:
            yield from items

    return hero.achievements.get("yields")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("item", "error", "problem"),
    [
        ("user", InvalidBackfill, "must yield \\(user_pk, level\\)"),
        ((1,), InvalidBackfill, "must yield \\(user_pk, level\\)"),
        ((1, 1, dt.datetime.now(), 4), InvalidBackfill, "must yield"),
        ((1, 1, "2024-01-01"), InvalidBackfill, "must be a datetime"),
        ((1, 1, dt.date(2024, 1, 1)), InvalidBackfill, "must be a datetime"),
        ((1, 1, dt.datetime(2999, 1, 1, tzinfo=dt.UTC)), InvalidBackfill, "past"),
        (
            (1, 1, dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5)))),
            InvalidBackfill,
            "from the year 1 in UTC",
        ),
        ((1, 9), InvalidLevel, "answered with level 9"),
    ],
    ids=[
        "not-a-tuple",
        "no-level",
        "four-items",
        "time-as-text",
        "date",
        "future",
        "before-year-1-in-utc",
        "unknown-level",
    ],
)
def test_a_backfill_yielding_what_is_not_an_award_is_refused_and_writes_nothing(
    backend: Backend,
    make_user: Any,
    isolated_registry: Any,
    item: Any,
    error: type[Exception],
    problem: str,
) -> None:
    # Arrange: a valid award, then the faulty item, in one batch.
    user = make_user()
    achievement = backfilling((user.pk, 1), item)
    before = table_snapshot(backend.alias)

    # Act / assert: backfill() raises hero's error; hero_backfill reports it as
    # a command error; nothing of the batch is written by either.
    with pytest.raises(error, match=problem):
        backfill(achievement)
    with pytest.raises(CommandError, match=problem):
        call_command("hero_backfill", "yields", stdout=io.StringIO())
    assert table_snapshot(backend.alias) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "pk",
    ["a\x00", "a\ud800", "abc", "1.5", 2**31, 2**63, Unprintable()],
    ids=[
        "nul",
        "lone-surrogate",
        "text",
        "decimal-text",
        "beyond-integer",
        "beyond-bigint",
        "str-raises",
    ],
)
def test_a_backfill_skips_pks_that_can_be_no_users(
    backend: Backend, make_user: Any, isolated_registry: Any, pk: Any
) -> None:
    # Arrange: a pk that no user can have (the user model's pk is an integer
    # column), then a user's.
    user = make_user()
    achievement = backfilling((pk, 1), (user.pk, 2))

    # Act
    result = backfill(achievement)

    # Assert: skipped as a missing user is, on both databases alike.
    assert result.skipped_users == 1
    assert result.users == {str(user.pk)}
    assert hero.achievements.levels(user) == {"yields": 2}


@pytest.mark.django_db
def test_a_naive_backfilled_time_is_taken_in_the_current_time_zone(
    backend: Backend, make_user: Any, isolated_registry: Any, settings: Any
) -> None:
    # Arrange: a site in Paris (UTC+1 in January); a naive time of noon.
    settings.TIME_ZONE = "Europe/Paris"
    user = make_user()
    achievement = backfilling((user.pk, 1, dt.datetime(2024, 1, 1, 12)))

    # Act
    backfill(achievement)

    # Assert: recorded as noon in Paris, so comparable with any moment.
    (entry,) = hero.achievements.history(user, "yields")
    assert entry.occurred_at == dt.datetime(2024, 1, 1, 11, tzinfo=dt.UTC)
    at = dt.datetime(2024, 1, 1, 11, 30, tzinfo=dt.UTC)
    assert hero.achievements.levels(user, at=at) == {"yields": 1}


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", [0, -1, 1_000_001, 10**30])
def test_a_backfill_batch_size_out_of_range_is_refused(
    backend: Backend, make_user: Any, unchanged: list[Any], batch_size: int
) -> None:
    make_user("early1")
    early_bird = hero.achievements.get("early_bird")
    with pytest.raises(InvalidBackfill, match="from 1 to 1000000"):
        backfill(early_bird, batch_size=batch_size)
    with pytest.raises(CommandError, match=r"--batch-size: .*from 1 to 1000000"):
        call_command(
            "hero_backfill",
            "early_bird",
            "--batch-size",
            str(batch_size),
            stdout=io.StringIO(),
        )


# hero_project -------------------------------------------------------------------


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "-inf", "soon"])
def test_hero_project_refuses_a_timeout_that_is_not_a_positive_finite_number(
    timeout: str,
) -> None:
    # A timeout of -1 or nan was accepted, and --once then exited at once
    # without catching up.
    with pytest.raises(
        CommandError,
        match=f"--timeout: must be a positive number of seconds, e.g. 600; "
        f"got '{timeout}'",
    ):
        call_command("hero_project", "--once", f"--timeout={timeout}")
