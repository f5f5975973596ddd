"""Concurrent unlocks of the same (user, achievement) never duplicate an award."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest
from django.db import connections

import hero
from hero.events import UserAchievement
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
