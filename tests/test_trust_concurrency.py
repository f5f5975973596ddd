"""Many processes unlocking at once: every award recorded once, no upgrade lost,
no error a retry could have avoided, and a follower of the store never sees
an event committed behind one it has already read.

Each test starts 8 worker processes (``python -m tests.trust_helpers load``) on
the test database. All workers target the same few users at the same moment,
and move on to the next few every quarter of a second, so that races go on for the
whole run. The CI run lasts a few seconds per test; ``HERO_TRUST_LOAD_SECONDS``
and ``HERO_TRUST_WORKERS`` make it longer or wider (see
benchmarks/README-trust.md).
"""

from __future__ import annotations

import gc
import io
import math
import signal
import threading
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

import hero
from hero.events import TriggerLog, UserAchievement
from hero.models import AchievementUnlocked
from hero.projections.verify import verify
from tests.conftest import Backend
from tests.store_log import recording
from tests.trust_helpers import (
    LoadResult,
    StoreFollower,
    all_notification_ids,
    children,
    domain_events,
    env_number,
    late_ids,
    make_users,
    run_load,
    verify_passes,
    wait_until,
)

WORKERS = int(env_number("HERO_TRUST_WORKERS", 8))
SECONDS = env_number("HERO_TRUST_LOAD_SECONDS", 3)
WINDOW = 0.25  # seconds all workers spend on the same users
PER_WINDOW = 4  # users they share in that time
TIMEOUT = int(SECONDS * 4) + 240


def users_for(alias: str, seconds: float) -> list[Any]:
    return make_users(alias, (math.ceil(seconds / WINDOW) + 1) * PER_WINDOW)


def assert_consistent(alias: str, result: LoadResult) -> None:
    """The store, the holdings table and what callers were told all agree."""
    # No caller saw an error: hero retries lost races itself.
    assert result.calls > 0
    assert not result.errors, (
        f"{len(result.errors)} failed calls, e.g.:\n{result.errors[0]}"
    )

    events = [e for e in domain_events() if isinstance(e, UserAchievement.Event)]
    history: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for event in events:
        history[(event.user_pk, event.achievement_id)].append(event)
    for key, sequence in history.items():
        kinds = [type(e).__name__ for e in sequence]
        levels = [e.level for e in sequence]
        # Exactly one Unlocked, first; then only upgrades, each from the level before.
        assert kinds == ["Unlocked"] + ["LevelUpgraded"] * (len(kinds) - 1), (
            key,
            kinds,
        )
        assert levels == sorted(set(levels)), (key, levels)
        assert [e.previous_level for e in sequence] == [None, *levels[:-1]], key
        assert [e.originator_version for e in sequence] == list(
            range(1, len(sequence) + 1)
        )

    # No lost upgrade: each pair ends at the highest level any caller asked for.
    assert {key: seq[-1].level for key, seq in history.items()} == result.requested
    holdings = {
        (str(user), achievement): level
        for user, achievement, level in AchievementUnlocked.objects.using(
            alias
        ).values_list("user_id", "achievement_id", "level")
    }
    assert holdings == result.requested

    # Every recorded award was reported to exactly one caller, and nothing else was.
    recorded = Counter(
        (e.user_pk, e.achievement_id, e.level, e.previous_level) for e in events
    )
    assert Counter(result.outcomes) == recorded


@pytest.fixture(autouse=True)
def store_log(tmp_path: Any) -> Iterator[None]:
    """What each process does with the store's positions (:mod:`tests.store_log`):
    ``verify_passes()`` then fails on a read that passed by an event committed
    after it, and says how a missing entry went missing."""
    with recording(tmp_path / "store.log"):
        yield


def stop_once_caught_up(worker: Any, alias: str) -> None:
    """Wait for a hero_project worker to apply every event, then stop it cleanly."""
    wait_until(
        lambda: not verify(alias).behind,
        timeout=120 + SECONDS,
        what="the projection worker to catch up",
        every=0.2,
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.output()


def assert_followed_without_gaps(follower: StoreFollower) -> None:
    assert follower.error is None, follower.error
    final = all_notification_ids()
    assert late_ids(follower.seen, final) == [], (
        "events committed behind a position already read"
    )
    assert follower.seen == final
    assert follower.reads > 10  # it really read while the writers wrote


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(TIMEOUT)
def test_processes_unlocking_at_once_with_inline_projections(backend: Backend) -> None:
    # Arrange: users for every window of the run; a follower of the store.
    users = users_for(backend.alias, SECONDS)

    # Act: 8 processes unlock, upgrade and repeat for the same users at once,
    # while the follower reads the store.
    with StoreFollower() as follower, children() as started:
        result = run_load(
            started,
            backend.alias,
            users,
            workers=WORKERS,
            seconds=SECONDS,
            per_window=PER_WINDOW,
            window=WINDOW,
        )

    # Assert: one Unlocked per pair, highest level kept, read tables match the store.
    print(
        f"{backend.name}: {WORKERS} workers, {SECONDS:.0f}s: {result.calls} calls "
        f"({result.calls / SECONDS:,.0f}/s), {len(result.outcomes)} awards, "
        f"{len(result.errors)} errors"
    )
    assert_followed_without_gaps(follower)
    assert_consistent(backend.alias, result)
    verify_passes()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(TIMEOUT)
def test_processes_unlocking_at_once_with_a_projection_worker(backend: Backend) -> None:
    # Arrange: writers in async mode, and a hero_project worker following them.
    users = users_for(backend.alias, SECONDS)
    with StoreFollower() as follower, children() as started:
        worker = started.manage(backend.alias, "hero_project", HERO_PROJECTIONS="async")
        worker.expect("Projecting holdings, ledger", timeout=60)

        # Act: the writers run; then the worker catches up and is stopped.
        result = run_load(
            started,
            backend.alias,
            users,
            workers=WORKERS,
            seconds=SECONDS,
            settings={"HERO_PROJECTIONS": "async"},
            per_window=PER_WINDOW,
            window=WINDOW,
        )
        stop_once_caught_up(worker, backend.alias)
        assert "Stopped; the next run resumes" in worker.output()

    # Assert: as with inline projections, once the worker has caught up.
    print(
        f"{backend.name}, async: {result.calls} calls, {len(result.outcomes)} awards, "
        f"{len(result.errors)} errors"
    )
    assert_followed_without_gaps(follower)
    assert_consistent(backend.alias, result)
    verify_passes()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(TIMEOUT)
def test_inline_and_async_writers_at_once_with_a_worker_and_rebuilds(
    backend: Backend,
) -> None:
    # Arrange: half the writers project inline (their views' positions stay
    # "current"), half write events only (and must mark the views behind); a
    # hero_project worker follows; rebuilds of the holdings run meanwhile; on
    # PostgreSQL, the marks of commits linger.
    users = users_for(backend.alias, SECONDS)
    stop = threading.Event()
    rebuilds: list[str] = []

    def rebuild_now_and_then() -> None:
        try:
            while not stop.wait(SECONDS / 4):
                out = io.StringIO()
                call_command("hero_rebuild", "holdings", stdout=out)
                rebuilds.append(out.getvalue())
        except Exception:
            rebuilds.append(traceback.format_exc())
        finally:
            connections.close_all()

    with children() as started:
        worker = started.manage(backend.alias, "hero_project", HERO_PROJECTIONS="async")
        worker.expect("Projecting holdings, ledger", timeout=60)
        rebuilder = threading.Thread(target=rebuild_now_and_then)
        rebuilder.start()
        try:
            # Act
            result = run_load(
                started,
                backend.alias,
                users,
                workers=WORKERS,
                seconds=SECONDS,
                settings_of=lambda i: {"HERO_PROJECTIONS": ("inline", "async")[i % 2]},
                per_window=PER_WINDOW,
                window=WINDOW,
            )
        finally:
            stop.set()
            rebuilder.join(timeout=120)
        stop_once_caught_up(worker, backend.alias)

    # Assert: the rebuilds ran and finished; the tables are what the store says.
    assert rebuilds and all("Rebuilt holdings" in r for r in rebuilds), rebuilds
    print(
        f"{backend.name}, inline and async: {result.calls} calls, "
        f"{len(result.outcomes)} awards, {len(rebuilds)} rebuilds"
    )
    assert_consistent(backend.alias, result)
    verify_passes()


def call_in_threads(calls: int, threads: int, call: Any) -> list[str]:
    """``call(i)`` ``calls`` times in each of ``threads`` threads released at
    once, each on its own connection; the tracebacks of the calls that failed."""
    barrier = threading.Barrier(threads)
    errors: list[str] = []

    def run() -> None:
        try:
            barrier.wait()
            for i in range(calls):
                try:
                    call(i)
                except Exception:
                    errors.append(traceback.format_exc(limit=4))
        finally:
            connections.close_all()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    return errors


@pytest.mark.django_db(transaction=True)
def test_logging_every_call_under_contention_surfaces_no_conflict(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    # Arrange: every call is logged; 8 threads (8 connections) call for one user.
    settings.HERO_RECORD_TRIGGERS = True
    user = make_user()

    # Act: each thread logs 40 calls that award nothing, and 10 that do.
    def call(i: int) -> None:
        if i % 4 == 0:
            hero.achievements.unlock("reports", user=user, level=1 + i % 3)
        else:
            hero.achievements.unlock("nobody_listens", user=user, n=i)

    errors = call_in_threads(50, WORKERS, call)
    gc.collect()

    # Assert: no caller saw an error, and every call was logged exactly once.
    assert not errors, (
        f"{len(errors)} of {50 * WORKERS} calls failed, e.g.:\n{errors[0]}"
    )
    logged = [e for e in domain_events() if isinstance(e, TriggerLog.Triggered)]
    assert len(logged) == 50 * WORKERS
    assert [e.originator_version for e in logged] == list(range(1, len(logged) + 1))
    verify_passes()


@pytest.mark.django_db
def test_a_call_losing_every_race_to_real_changes_still_succeeds(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hero.events.aggregates import user_achievement_id
    from hero.ledger import Ledger, get_ledger, replay

    # Arrange: each time our call loads an aggregate, another process has
    # just written the next real change to it (points 1, 2, 3, 4, then
    # night_owl 1), one per attempt, so that five attempts in a row conflict.
    # (A 150 s load run on PostgreSQL once hit this with HERO_UNLOCK_ATTEMPTS
    # at 5.) The rivals' changes are stored first; each attempt reads the
    # aggregate as it was before the change it loses to. (On PostgreSQL the
    # read is in hero's transaction: a rival written there would roll back
    # with it.)
    user = make_user()
    ledger = get_ledger()
    for achievement_id, levels in (("points", [1, 2, 3, 4]), ("night_owl", [1])):
        for level in levels:
            rival = ledger.user_achievement(str(user.pk), achievement_id)
            rival.award(level, trigger="rival", state={})
            ledger.save(rival)
    original = Ledger.user_achievement
    # (points, night_owl) versions each attempt reads; None: as they are.
    stale = [(0, None), (1, None), (2, None), (3, None), (None, 0)]
    attempts: list[tuple[int | None, int | None]] = []

    def load_then_lose(
        self: Ledger, user_pk: str, achievement_id: str, read: Any = None
    ) -> Any:
        if achievement_id == "points":  # an attempt starts with "points"
            attempts.append(stale.pop(0) if stale else (None, None))
        version = attempts[-1][achievement_id == "night_owl"]
        if version is None:
            return original(self, user_pk, achievement_id, read)
        stored = self.recorder.select_events(
            user_achievement_id(user_pk, achievement_id), lte=version
        )
        if not stored:
            return UserAchievement.start(user_pk, achievement_id)
        return replay(None, [self.mapper.to_domain_event(e) for e in stored])

    monkeypatch.setattr(Ledger, "user_achievement", load_then_lose)

    # Act: one call that asks for points at level 4 and night_owl.
    outcomes = hero.achievements.unlock(
        "score_changed", user=user, points=10_000, night=True
    )

    # Assert: the rivals did it all; the caller is told there was nothing to do.
    assert outcomes == []
    assert len(attempts) == 6 and not stale
    levels = {
        (e.achievement_id, e.level)
        for e in domain_events()
        if isinstance(e, UserAchievement.Event)
    }
    assert ("points", 4) in levels and ("night_owl", 1) in levels
