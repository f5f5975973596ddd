"""hero_backfill: retroactive awards from backfill() or from the trigger log."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from freezegun import freeze_time

import hero
from hero import AchievementBase, AchievementUnlocked
from hero.backfill import backfill as backfill_achievement
from hero.exceptions import HeroError, NothingToBackfill
from hero.models import AchievementUnlocked as Holding
from tests.conftest import Backend, stored_domain_events


def backfill(*args: str) -> str:
    out = io.StringIO()
    call_command("hero_backfill", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_backfill_from_the_achievements_own_method(
    backend: Backend, make_user: Any
) -> None:
    with freeze_time("2025-06-01"):
        early = [make_user("early1"), make_user("early2")]
    make_user("late")

    dry = backfill("early_bird", "--dry-run")
    assert (
        "level 1 (Bronze): 2 would be awarded" in dry and "Nothing was written." in dry
    )
    assert stored_domain_events() == []

    assert "2 users awarded." in backfill("early_bird")
    holdings = Holding.objects.using(backend.alias).filter(achievement="early_bird")
    assert sorted(h.user_id for h in holdings) == sorted(u.pk for u in early)
    # Awarded with the time the backfill() gave (when they joined), not now.
    assert {h.unlocked_at for h in holdings} == {dt.datetime(2025, 6, 1, tzinfo=dt.UTC)}
    assert {e.event for e in hero.achievements.history(early[0])} == {"backfill"}

    # A second run adds nothing.
    assert "No user awarded anything" in backfill("early_bird")
    assert len(stored_domain_events()) == 2


@pytest.mark.django_db
def test_backfill_replays_the_trigger_log_with_original_times(
    backend: Backend, make_user: Any, settings: Any, isolated_registry: Any
) -> None:
    # Calls recorded before the achievement existed.
    settings.HERO_RECORD_TRIGGERS = True
    ann, bob = make_user("ann"), make_user("bob")
    with freeze_time("2026-01-05 10:00"):
        hero.achievements.unlock("comment_posted", user=ann, words=50)
    with freeze_time("2026-01-06 10:00"):
        hero.achievements.unlock("comment_posted", user=ann, words=500)
        hero.achievements.unlock("comment_posted", user=bob, words=10)

    # The achievement is added later.
    @hero.achievements.register
    class Wordy(AchievementBase):
        id = "wordy"
        title = "Wordy"
        events = ["comment_posted"]

        def unlock(self, **state: Any) -> AchievementUnlocked | None:
            words = state["words"]
            return (
                AchievementUnlocked(level=2 if words >= 500 else 1)
                if words >= 50
                else None
            )

    dry = backfill("wordy", "--dry-run")
    assert "from trigger log" in dry
    assert (
        "level 1 (Bronze): 1 would be awarded" in dry and "level 2 (Silver): 1" in dry
    )

    backfill("wordy")

    entries = [e for e in hero.achievements.history(ann, "wordy")]
    assert [(e.kind, e.level, e.event, e.occurred_at) for e in entries] == [
        ("unlocked", 1, "backfill", dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)),
        ("upgraded", 2, "backfill", dt.datetime(2026, 1, 6, 10, tzinfo=dt.UTC)),
    ]
    assert hero.achievements.levels(bob) == {}
    assert "No user awarded anything" in backfill("wordy")


@pytest.mark.django_db
def test_backfill_errors(backend: Backend, make_user: Any) -> None:
    with pytest.raises(CommandError, match="No achievement has id 'nope'"):
        backfill("nope")
    with pytest.raises(CommandError, match="the trigger log is empty"):
        backfill("points")


@pytest.mark.django_db
def test_backfill_without_a_source_raises_a_hero_error(backend: Backend) -> None:
    # "points" defines no backfill(), and no unlock call was ever logged.
    achievement = hero.achievements.get("points")

    # Called from Python rather than through hero_backfill.
    with pytest.raises(NothingToBackfill, match="the trigger log is empty") as raised:
        backfill_achievement(achievement)

    assert isinstance(raised.value, HeroError)
    assert stored_domain_events() == []
