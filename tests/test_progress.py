"""Achievements with steps: progress that never goes back, and completes."""

from __future__ import annotations

from typing import Any

import pytest

import hero
from hero.events import Outcome, Progress
from hero.exceptions import InvalidUnlockResult
from hero.models import AchievementProgress, AchievementUnlocked, LedgerEntry
from tests.conftest import Backend


def progress_of(alias: str, user: Any) -> tuple[int, int, float] | None:
    row = (
        AchievementProgress.objects.using(alias)
        .filter(user=user, achievement="bookworm")
        .first()
    )
    return None if row is None else (row.steps, row.total, row.percent)


@pytest.mark.django_db
def test_progress_goes_up_repeats_change_nothing_and_completion_unlocks(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    read = hero.achievements.unlock

    assert read("chapter_read", user=user, chapters=2) == [
        Progress("bookworm", 2, 0, 5)
    ]
    assert progress_of(backend.alias, user) == (2, 5, 40.0)
    assert read("chapter_read", user=user, chapters=2) == []  # repeated report
    assert read("chapter_read", user=user, chapters=1) == []  # never backwards
    assert progress_of(backend.alias, user) == (2, 5, 40.0)

    assert read("chapter_read", user=user, chapters=5) == [
        Progress("bookworm", 5, 2, 5),
        Outcome("bookworm", 1, None),
    ]
    assert progress_of(backend.alias, user) == (5, 5, 100.0)
    assert (
        AchievementUnlocked.objects.using(backend.alias).get(user=user).achievement_id
        == "bookworm"
    )
    assert read("chapter_read", user=user, chapters=6) == [
        Progress("bookworm", 6, 5, 5)
    ]

    kinds = [(e.kind, e.steps, e.level) for e in hero.achievements.history(user)]
    assert kinds == [
        ("progressed", 2, None),
        ("progressed", 5, None),
        ("unlocked", None, 1),
        ("progressed", 6, None),
    ]
    assert (
        LedgerEntry.objects.using(backend.alias).filter(kind="progressed").count() == 3
    )


@pytest.mark.django_db
def test_progress_needs_declared_steps(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    @hero.achievements.register
    class NoSteps(hero.AchievementBase):
        id = "no_steps"
        title = "No steps"
        events = ["step_event"]

        def unlock(self, **state: Any) -> Any:
            return hero.AchievementProgress(steps=1)

    with pytest.raises(InvalidUnlockResult, match="declares no steps"):
        hero.achievements.unlock("step_event", user=make_user())


@pytest.mark.django_db
@pytest.mark.parametrize("steps", [-1, "3", 2.5, True])
def test_bad_step_counts_are_refused(
    backend: Backend, make_user: Any, steps: Any
) -> None:
    with pytest.raises(InvalidUnlockResult, match="whole number"):
        hero.achievements.unlock("chapter_read", user=make_user(), chapters=steps)
