"""Properties of any sequence of unlocks, upgrades, progress, revocations,
rolled-back calls and rebuilds, for several users (hypothesis).

After every step: the read tables equal a replay of the events
(``verify().differences`` is empty), they equal a simple model of what each
call should do, every call returned what the model says, a level never goes
down except by revocation, and no (user, achievement) has two current rows.

Then any input to every public entry point (``unlock``, ``revoke``,
``history``, ``levels``, ``backfill`` and the commands ``hero_audit`` and
``hero_backfill``): text with NUL characters and lone surrogates, state of any
shape and keys of any type, moments that are not datetimes, numbers of any
size. Each call either succeeds, leaving tables that equal a replay of the
store, or raises a hero error (a CommandError with a message naming the
argument, from a command) and writes nothing; on SQLite and PostgreSQL alike.

Each example runs in a transaction that is rolled back at its end, so examples
never see each other's users or events. ``HERO_TRUST_EXAMPLES`` sets how many
examples each test runs (25 in CI).
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Count
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import hero
from hero import AchievementBase
from hero.backfill import backfill
from hero.events import Outcome, Progress
from hero.exceptions import HeroError, NotHeldError
from hero.models import AchievementCount, AchievementProgress, AchievementUnlocked
from hero.projections.rebuild import rebuild
from hero.projections.verify import verify
from tests.conftest import Backend
from tests.trust_helpers import (
    POINT_LEVELS,
    Unprintable,
    env_number,
    make_users,
    nested,
    read_tables,
    table_snapshot,
)

USERS = 3
BOOKWORM_STEPS = 5  # steps of the test app's "bookworm"

EXAMPLES = settings(
    max_examples=int(env_number("HERO_TRUST_EXAMPLES", 25)),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # After a failure, the explain phase's runs left an example's rows behind
    # its rolled-back atomic block, and every later run then failed on them
    # (duplicate usernames) instead of showing the real failure.
    phases=[phase for phase in Phase if phase is not Phase.explain],
)


class Rollback(Exception):
    """Ends an example's (or a step's) transaction without committing it."""


# Operations -----------------------------------------------------------------------

users = st.integers(0, USERS - 1)
operations = st.one_of(
    st.tuples(st.just("reports"), users, st.integers(1, 4)),
    st.tuples(st.just("score_changed"), users, st.sampled_from(sorted(POINT_LEVELS))),
    st.tuples(st.just("chapter_read"), users, st.integers(0, BOOKWORM_STEPS + 2)),
    st.tuples(st.just("rank_changed"), users, st.sampled_from([1, 10, 11, 50])),
    st.tuples(
        st.just("revoke"),
        users,
        st.sampled_from(["awards_first", "points", "bookworm", "top_ten"]),
    ),
)
steps = st.lists(
    st.tuples(operations, st.sampled_from(["commit"] * 4 + ["rollback", "rebuild"])),
    min_size=1,
    max_size=20,
)


@dataclass
class Model:
    """What each user holds, and the progress they made, by the rules hero documents."""

    levels: dict[tuple[str, str], int] = field(default_factory=dict)
    progress: dict[tuple[str, str], int] = field(default_factory=dict)

    def award(self, user: str, achievement: str, level: int) -> list[Any]:
        held = self.levels.get((user, achievement))
        if held is not None and level <= held:
            return []
        self.levels[(user, achievement)] = level
        return [Outcome(achievement, level, held)]

    def apply(
        self, operation: tuple[str, int, Any], user: str
    ) -> tuple[list[Any], bool]:
        """What unlock() (or revoke()) returns, and whether it raises NotHeldError."""
        kind, _, value = operation
        if kind == "reports":
            return self.award(user, "awards_first", value), False
        if kind == "score_changed":
            return self.award(user, "points", POINT_LEVELS[value]), False
        if kind == "chapter_read":
            key = (user, "bookworm")
            changes: list[Any] = []
            before = self.progress.get(key, 0)
            if value > before:
                self.progress[key] = value
                changes.append(Progress("bookworm", value, before, BOOKWORM_STEPS))
            if self.progress.get(key, 0) >= BOOKWORM_STEPS and key not in self.levels:
                changes += self.award(user, "bookworm", 1)
            return changes, False
        if kind == "rank_changed":
            if value <= 10:
                return self.award(user, "top_ten", 1), False
            self.revoke(user, "top_ten")  # revoked when unmet; not returned
            return [], False
        if (user, value) not in self.levels:
            return [], True
        self.revoke(user, value)
        return [], False

    def revoke(self, user: str, achievement: str) -> None:
        """Revoking takes the level away, and the progress toward it."""
        if self.levels.pop((user, achievement), None) is not None:
            self.progress.pop((user, achievement), None)


def call(operation: tuple[str, int, Any], user: Any) -> list[Any]:
    kind, _, value = operation
    if kind == "revoke":
        hero.achievements.revoke(user, value, reason="property test")
        return []
    argument = {
        "reports": "level",
        "score_changed": "points",
        "chapter_read": "chapters",
        "rank_changed": "rank",
    }[kind]
    return hero.achievements.unlock(kind, user=user, **{argument: value})


# Invariants -----------------------------------------------------------------------


def holdings(alias: str) -> dict[tuple[str, str], int]:
    return {
        (str(u), a): level
        for u, a, level in AchievementUnlocked.objects.using(alias).values_list(
            "user_id", "achievement_id", "level"
        )
    }


def check_invariants(
    alias: str,
    model: Model,
    previous: dict[tuple[str, str], int],
    revoked: set[tuple[str, str]],
) -> dict[tuple[str, str], int]:
    """Assert every invariant; the holdings now (to compare with the next step)."""
    verification = verify(alias)
    assert verification.differences == []
    assert verification.behind == {}

    now = holdings(alias)
    assert now == model.levels
    assert {
        (str(u), a): steps
        for u, a, steps in AchievementProgress.objects.using(alias).values_list(
            "user_id", "achievement_id", "steps"
        )
    } == model.progress
    counts = {
        key: n
        for key, n in AchievementCount.objects.using(alias).holders().items()
        if n
    }
    assert counts == dict(Counter((a, level) for (_, a), level in model.levels.items()))

    # A level never goes down; a holding only disappears by revocation.
    for key, level in previous.items():
        if key in now:
            assert now[key] >= level, (key, level, now[key])
        else:
            assert key in revoked, key
    # One current row per (user, achievement).
    duplicates = (
        AchievementUnlocked.objects.using(alias)
        .values("user", "achievement")
        .annotate(rows=Count("id"))
        .filter(rows__gt=1)
    )
    assert not duplicates.exists()
    return now


# The property ---------------------------------------------------------------------


@pytest.mark.django_db
@EXAMPLES
@given(script=steps)
def test_read_tables_always_equal_a_replay_and_the_model(
    backend: Backend, script: list[tuple[tuple[str, int, Any], str]]
) -> None:
    alias = backend.alias
    with pytest.raises(Rollback), transaction.atomic(using=alias):
        # Arrange: fresh users, in this example's transaction only.
        people = make_users(alias, USERS, prefix=f"p{id(script)}-")
        model = Model()
        previous: dict[tuple[str, str], int] = {}

        for operation, how in script:
            user = people[operation[1]]
            pk = str(user.pk)
            before = dict(model.levels)
            if how == "rollback":
                # Act: the call in a transaction that rolls back changes nothing.
                with pytest.raises(Rollback), transaction.atomic(using=alias):
                    try:
                        call(operation, user)
                    except NotHeldError:
                        pass
                    raise Rollback
                revoked: set[tuple[str, str]] = set()
            else:
                # Act: the call; it returns (or raises) what the model says.
                expected, not_held = Model(
                    dict(model.levels), dict(model.progress)
                ).apply(operation, pk)
                if not_held:
                    with pytest.raises(NotHeldError):
                        call(operation, user)
                else:
                    assert call(operation, user) == expected, operation
                model.apply(operation, pk)
                revoked = {key for key in before if key not in model.levels}
                if how == "rebuild":
                    # A rebuild from the whole store gives the same tables.
                    tables = read_tables(alias)
                    rebuild(alias, batch_size=3)
                    assert read_tables(alias) == tables

            # Assert: every invariant, after every step.
            previous = check_invariants(alias, model, previous, revoked)
        raise Rollback


@pytest.mark.django_db
@EXAMPLES
@given(
    script=st.lists(
        st.tuples(operations, st.sampled_from(["inline", "async"])),
        min_size=1,
        max_size=20,
    )
)
def test_switching_between_inline_and_async_projections_never_loses_an_event(
    backend: Backend, settings: Any, script: list[tuple[tuple[str, int, Any], str]]
) -> None:
    alias = backend.alias
    with pytest.raises(Rollback), transaction.atomic(using=alias):
        people = make_users(alias, USERS, prefix="s")
        model = Model()
        for operation, mode in script:
            # Act: each call in the mode of its step (async: no read table changes).
            settings.HERO_PROJECTIONS = mode
            user = people[operation[1]]
            expected, not_held = Model(dict(model.levels), dict(model.progress)).apply(
                operation, str(user.pk)
            )
            if not_held:
                with pytest.raises(NotHeldError):
                    call(operation, user)
            else:
                assert call(operation, user) == expected, operation
            model.apply(operation, str(user.pk))

            # Assert: views that lag are behind, never wrong; an inline write
            # first applies what it missed, so caught-up views equal the model.
            verification = verify(alias)
            assert verification.differences == []
            if not verification.behind:
                assert holdings(alias) == model.levels
        # A rebuild (or the worker) catches up with everything.
        rebuild(alias, batch_size=4)
        check_invariants(alias, model, {}, set())
        raise Rollback


# Any input to every entry point ------------------------------------------------

#: Text of any characters: hypothesis leaves lone surrogates out unless told,
#: and NUL, surrogates and overlong text are made likely.
texts = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "a\udfffb", "x" * 300]),
)
offsets = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59),
    max_value=dt.timedelta(hours=23, minutes=59),
).map(dt.timezone)
#: Naive and aware datetimes, from the year 1 to 9999 (in any offset).
datetimes = st.datetimes() | st.datetimes(timezones=offsets)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    texts,
    st.binary(max_size=8),
    st.decimals(),
    st.dates(),
    datetimes,
    st.uuids(),
    st.builds(Unprintable),
    st.integers(0, 12_000).map(nested),
)
keys = st.one_of(
    texts,
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.tuples(st.integers(0, 3)),
    st.builds(Unprintable),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=3),
        st.frozensets(st.integers() | texts, max_size=3),
    ),
    max_leaves=10,
)
#: unlock()'s keyword arguments (``user`` is its own argument).
states = st.dictionaries(texts.filter(lambda key: key != "user"), values, max_size=4)
#: What a caller may pass where hero expects a moment.
moments = st.one_of(st.none(), datetimes, st.dates(), texts, st.integers(), st.floats())


@pytest.fixture
def example(backend: Backend) -> Iterator[Any]:
    """Runs an example: ``with example() as user:`` gives a fresh user holding
    awards_first, in a transaction rolled back when the block ends."""

    @contextmanager
    def run(prefix: str = "in") -> Iterator[Any]:
        with pytest.raises(Rollback), transaction.atomic(using=backend.alias):
            (user,) = make_users(backend.alias, 1, prefix=prefix)
            hero.achievements.unlock("reports", user=user, level=1)
            yield user
            raise Rollback

    return run


def succeeds_or_writes_nothing(alias: str, call: Any) -> Any:
    """Call ``call()``: it returns (and the tables still equal a replay of the
    store), or raises a hero error and leaves every table as it was."""
    before = table_snapshot(alias)
    try:
        result = call()
    except HeroError as error:
        event(f"refused: {type(error).__name__}")  # --hypothesis-show-statistics
        assert table_snapshot(alias) == before
        return None
    event("succeeded")
    assert verify(alias).differences == []
    return result


@pytest.mark.django_db
@EXAMPLES
@given(event=st.just("reports") | texts, state=states, logged=st.booleans())
def test_unlock_records_any_state_or_refuses_it_writing_nothing(
    backend: Backend,
    settings: Any,
    example: Any,
    event: str,
    state: dict[str, Any],
    logged: bool,
) -> None:
    settings.HERO_RECORD_TRIGGERS = logged
    with example() as user:
        succeeds_or_writes_nothing(
            backend.alias, lambda: hero.achievements.unlock(event, user=user, **state)
        )


@pytest.mark.django_db
@EXAMPLES
@given(
    achievement_id=st.just("awards_first") | texts,
    reason=st.one_of(texts, st.none(), st.integers()),
    actor=st.one_of(st.none(), texts, st.integers(), st.builds(Unprintable)),
)
def test_revoke_records_or_refuses_any_reason_actor_and_id(
    backend: Backend, example: Any, achievement_id: Any, reason: Any, actor: Any
) -> None:
    with example() as user:
        succeeds_or_writes_nothing(
            backend.alias,
            lambda: hero.achievements.revoke(
                user, achievement_id, reason=reason, actor=actor
            ),
        )


@pytest.mark.django_db
@EXAMPLES
@given(
    achievement_id=st.one_of(st.none(), st.just("awards_first"), texts, st.integers()),
    at=moments,
)
def test_history_and_levels_answer_or_refuse_any_argument(
    backend: Backend, example: Any, achievement_id: Any, at: Any
) -> None:
    with example() as user:
        before = table_snapshot(backend.alias)
        for call in (
            lambda: hero.achievements.history(user, achievement_id),
            lambda: hero.achievements.levels(user, at=at),
        ):
            try:
                call()
            except HeroError:
                pass
        # Reading writes nothing, whatever it was asked.
        assert table_snapshot(backend.alias) == before


class UserIndex(int):
    """Stands for the pk of the example's user (made in the example)."""


#: What a backfill() may yield: awards of any pk, level and time, or junk.
backfill_pks = st.one_of(
    st.just(UserIndex(0)),
    texts,
    st.integers(),
    st.floats(),
    st.builds(Unprintable),
)
backfill_levels = st.one_of(st.integers(1, 4), st.integers(), texts, st.none())
#: Awards that look right (of any pk), so that whole batches get recorded too.
plausible_items = st.tuples(
    backfill_pks,
    st.integers(1, 4),
    st.none() | st.datetimes(max_value=dt.datetime(2025, 1, 1)),
)
backfill_items = st.one_of(
    plausible_items,
    st.tuples(backfill_pks, backfill_levels),
    st.tuples(backfill_pks, backfill_levels, datetimes | st.dates() | texts),
    texts,
    st.lists(st.integers(), max_size=4),
    st.none(),
)


class Yields(AchievementBase):
    """Backfills whatever the example put in ``items``."""

    id = "yields"
    title = "Yields what it is given"
    events = ["never_sent"]
    items: ClassVar[list[Any]] = []

    def unlock(self, **state: Any) -> None:
        return None

    def backfill(self) -> Iterator[Any]:
        yield from self.items


@pytest.mark.django_db
@EXAMPLES
@given(
    items=st.lists(plausible_items, max_size=5) | st.lists(backfill_items, max_size=5),
    dry_run=st.booleans(),
)
def test_backfill_awards_or_refuses_whatever_backfill_yields(
    backend: Backend,
    isolated_registry: Any,
    example: Any,
    items: list[Any],
    dry_run: bool,
) -> None:
    hero.achievements.register(Yields)  # again in later examples: harmless
    with example() as user:
        Yields.items = [
            tuple(user.pk if isinstance(v, UserIndex) else v for v in item)
            if isinstance(item, tuple)
            else item
            for item in items
        ]
        before = table_snapshot(backend.alias)
        # Act: one batch, so that an error leaves nothing of it.
        result = succeeds_or_writes_nothing(
            backend.alias,
            lambda: backfill(
                hero.achievements.get("yields"),
                dry_run=dry_run,
                batch_size=len(items) + 1,
            ),
        )
        if result is not None and dry_run:
            assert table_snapshot(backend.alias) == before


@pytest.mark.django_db
@EXAMPLES
@given(
    user=st.one_of(st.just("in0"), texts, st.integers().map(str)),
    achievement=st.one_of(st.none(), st.just("awards_first"), texts),
    as_of=st.one_of(
        st.none(),
        texts,
        datetimes.map(dt.datetime.isoformat),
        st.dates().map(dt.date.isoformat),
    ),
    output=st.sampled_from(["table", "json"]),
)
def test_hero_audit_answers_or_refuses_any_argument(
    backend: Backend,
    example: Any,
    user: str,
    achievement: str | None,
    as_of: str | None,
    output: str,
) -> None:
    options = [f"--format={output}"]
    if achievement is not None:
        options.append(f"--achievement={achievement}")
    if as_of is not None:
        options.append(f"--as-of={as_of}")
    with example():
        before = table_snapshot(backend.alias)
        try:
            call_command("hero_audit", *options, "--", user, stdout=io.StringIO())
        except CommandError as error:
            # The message names what was wrong with which argument.
            assert any(
                name in str(error)
                for name in ("USER", "--achievement", "--as-of", "No user", "No ach")
            ), str(error)
        assert table_snapshot(backend.alias) == before


@pytest.mark.django_db
@EXAMPLES
@given(
    achievement_id=st.one_of(
        st.sampled_from(["early_bird", "points", "bookworm"]), texts
    ),
    batch_size=st.one_of(st.none(), st.integers()),
    dry_run=st.booleans(),
)
def test_hero_backfill_awards_or_refuses_any_argument(
    backend: Backend,
    example: Any,
    achievement_id: str,
    batch_size: int | None,
    dry_run: bool,
) -> None:
    options = ["--dry-run"] if dry_run else []
    if batch_size is not None:
        options.append(f"--batch-size={batch_size}")
    with example(prefix="early"):  # early_bird backfills users named early*
        before = table_snapshot(backend.alias)
        try:
            call_command(
                "hero_backfill", *options, "--", achievement_id, stdout=io.StringIO()
            )
        except CommandError as error:
            # The message names the argument, or the achievement it was given.
            assert "--batch-size" in str(error) or repr(achievement_id)[:20] in str(
                error
            ), str(error)
            assert table_snapshot(backend.alias) == before
        else:
            assert verify(backend.alias).differences == []
            if dry_run:
                assert table_snapshot(backend.alias) == before
