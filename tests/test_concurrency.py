"""Concurrent unlocks of the same (user, achievement) never duplicate an award."""

from __future__ import annotations

import gc
import io
import threading
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections, transaction

import hero
from hero.events import TriggerLog, UserAchievement
from hero.ledger import get_ledger
from hero.models import AchievementCount, StoredEvent
from tests.conftest import Backend, stored_domain_events

THREADS = 8


def race(target: Any, args_per_thread: list[tuple[Any, ...]]) -> list[Any]:
    """Run target(*args) in one thread each, released at the same moment."""
    barrier = threading.Barrier(len(args_per_thread))
    results: list[Any] = [None] * len(args_per_thread)

    def run(index: int, args: tuple[Any, ...]) -> None:
        try:
            barrier.wait()
            results[index] = target(*args)
        except Exception as error:  # reported by the test
            results[index] = error
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(i, args))
        for i, args in enumerate(args_per_thread)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    return results


@pytest.mark.django_db(transaction=True)
def test_racing_first_unlocks_record_exactly_one_unlocked_event(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()

    results = race(
        lambda: hero.achievements.unlock("score_changed", user=user, points=10),
        [()] * THREADS,
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    # Exactly one caller was told it unlocked the achievement; the rest found it held.
    assert sorted(len(r) for r in results) == [0] * (THREADS - 1) + [1]
    events = [e for e in stored_domain_events() if isinstance(e, UserAchievement.Event)]
    assert [type(e).__name__ for e in events] == ["Unlocked"]


@pytest.mark.django_db(transaction=True)
def test_racing_upgrades_end_at_the_highest_level_without_duplicates(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    points = [10, 100, 1_000, 10_000] * (THREADS // 4)

    results = race(
        lambda p: hero.achievements.unlock("score_changed", user=user, points=p),
        [(p,) for p in points],
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    events = [e for e in stored_domain_events() if isinstance(e, UserAchievement.Event)]
    assert sum(isinstance(e, UserAchievement.Unlocked) for e in events) == 1
    levels = [e.level for e in events]
    assert levels == sorted(set(levels)) and levels[-1] == 4  # only ever upward
    assert [e.originator_version for e in events] == list(range(1, len(events) + 1))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("logged", [False, True], ids=["awards", "with-trigger-log"])
def test_requests_that_award_do_not_wait_for_one_anothers_transactions(
    backend: Backend, make_user: Any, settings: Any, logged: bool
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL lets writers of events overlap")
    # Arrange: a user per request, and a follower of the store reading along;
    # a first award has made the read models current (their positions exist).
    # With the trigger log on, every request also appends to its user's log.
    settings.HERO_RECORD_TRIGGERS = logged
    hero.achievements.unlock("score_changed", user=make_user(), points=10)
    users = [make_user() for _ in range(THREADS)]
    recorder = get_ledger().recorder
    start = recorder.max_notification_id() or 0
    subscription = recorder.subscribe(gt=start)
    seen: list[int] = []

    def follow() -> None:
        try:
            seen.extend(n.id for n in subscription)
        finally:
            connections.close_all()  # this thread's

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    hold = 0.5

    def request(user: Any) -> tuple[float, float]:
        connections[backend.alias].ensure_connection()
        began = time.monotonic()
        # As ATOMIC_REQUESTS runs a view: the award, then more of the view's work.
        with transaction.atomic(using=backend.alias):
            hero.achievements.unlock("score_changed", user=user, points=10)
            time.sleep(hold)
        return began, time.monotonic()

    # Act
    results = race(request, [(user,) for user in users])
    stored = list(
        StoredEvent.objects.using(backend.alias)
        .filter(id__gt=start)
        .order_by("id")
        .values_list("id", flat=True)
    )
    deadline = time.monotonic() + 10
    while len(seen) < len(stored) and time.monotonic() < deadline:
        time.sleep(0.05)
    subscription.stop()
    follower.join(5)

    # Assert: the requests overlapped (one at a time would take THREADS holds)...
    assert not [r for r in results if isinstance(r, Exception)], results
    elapsed = max(end for _, end in results) - min(began for began, _ in results)
    assert elapsed < hold * THREADS / 2, elapsed
    # ...the follower read every event once, in order, none filled in behind it...
    assert seen == stored
    # ...and the counts, the read tables and the chain agree with the store.
    counts = AchievementCount.objects.using(backend.alias).holders(["points"])
    assert counts == {("points", 1): THREADS + 1}
    logs = [e for e in stored_domain_events() if isinstance(e, TriggerLog.Triggered)]
    assert len(logs) == ((THREADS + 1) if logged else 0)
    out = io.StringIO()
    call_command("hero_verify", stdout=out)
    total = StoredEvent.objects.using(backend.alias).count()
    assert f"{total} events chained" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_one_users_logged_calls_take_turns_and_never_collide(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("elsewhere writers of events take turns anyway")
    # Arrange: one user's requests at once, each logging its call, then
    # holding its transaction.
    settings.HERO_RECORD_TRIGGERS = True
    user = make_user()
    hold, requests = 0.2, 4

    def request(points: int) -> float:
        connections[backend.alias].ensure_connection()
        with transaction.atomic(using=backend.alias):
            hero.achievements.unlock("score_changed", user=user, points=points)
            time.sleep(hold)
        return time.monotonic()

    # Act
    began = time.monotonic()
    results = race(request, [(points,) for points in (5, 10, 100, 1_000)])

    # Assert: every call was logged once, at versions one after another,
    # which the requests reached in turn, each after the one before ended.
    assert not [r for r in results if isinstance(r, Exception)], results
    logs = [e for e in stored_domain_events() if isinstance(e, TriggerLog.Triggered)]
    assert sorted(e.originator_version for e in logs) == list(range(1, requests + 1))
    assert max(results) - began >= hold * requests
    out = io.StringIO()
    call_command("hero_verify", stdout=out)
    total = StoredEvent.objects.using(backend.alias).count()
    assert f"{total} events chained" in out.getvalue()
