"""Retroactive awarding of an achievement added (or changed) after the fact.

Two sources of truth, in this order:

1. the achievement's own ``backfill(self)``, yielding ``(user_pk, level)`` or
   ``(user_pk, level, awarded_at)`` computed from the project's tables;
2. otherwise the trigger log (``HERO_RECORD_TRIGGERS``): every recorded call of
   one of the achievement's events is replayed through its ``unlock()``, in the
   order of the store, and awarded with the time of the original call.

Awards are recorded as ordinary events whose trigger is ``"backfill"``; a
level the user already holds changes nothing, so running it twice adds nothing.
An achievement that was ever revoked from a user is never given back by a
backfill (unlock it again explicitly if that is wanted). Backfills send no
signals: they are not news to the user.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple, cast

from django.contrib.auth import get_user_model

from hero.base import AchievementBase
from hero.events import Outcome, Progress, TriggerLog
from hero.exceptions import NothingToBackfill
from hero.ledger import Decision, Effect, get_ledger
from hero.users import existing_user_pks
from hero.validation import (
    backfilled_awards,
    check_batch_size,
    decision_of,
    recorded_state,
)

TRIGGER = "backfill"


class Candidate(NamedTuple):
    """One award a backfill would make (a tuple: one is made per candidate)."""

    #: None for a pk that can be no user's (it is skipped, as a missing user is).
    user_pk: str | None
    decision: Decision
    awarded_at: datetime | None


@dataclass
class BackfillResult:
    source: str
    levels: Counter[int] = field(default_factory=Counter)
    completed_progress: int = 0
    users: set[str] = field(default_factory=set)
    sample: list[tuple[str, int]] = field(default_factory=list)
    skipped_users: int = 0
    skipped_revoked: int = 0
    examined: int = 0


def source_of(achievement: AchievementBase) -> str:
    if callable(getattr(achievement, "backfill", None)):
        return "backfill()"
    return "trigger log"


def candidates(achievement: AchievementBase, batch_size: int) -> Iterator[Candidate]:
    """What the achievement would award, user by user, in order."""
    if callable(getattr(achievement, "backfill", None)):
        award_of = backfilled_awards(achievement)
        # Decisions are immutable: one per level serves every award without a
        # key (making one costs more than the rest of a candidate).
        by_level: dict[int, Decision] = {}
        decision: Decision | None
        for item in achievement.backfill():  # type: ignore[attr-defined]
            user_pk, level, awarded_at, key = award_of(item)
            decision = by_level.get(level) if key is None else None
            if decision is None:
                decision = Decision(achievement.id, level=level, key=key)
                if key is None:
                    by_level[level] = decision
            yield Candidate(user_pk, decision, awarded_at)
        return

    ledger = get_ledger()
    events = set(getattr(achievement, "events", ()))
    user_model = get_user_model()
    position = 0
    while True:
        batch = ledger.recorder.select_notifications(
            start=position,
            limit=batch_size,
            topics=[TriggerLog.Triggered.TOPIC],
            inclusive_of_start=False,
        )
        if not batch:
            return
        position = batch[-1].id
        # Only Triggered events: theirs is the one topic asked for.
        triggers = cast(
            "list[TriggerLog.Triggered]",
            [ledger.mapper.to_domain_event(n) for n in batch],
        )
        triggers = [t for t in triggers if t.trigger in events]
        users = user_model._default_manager.db_manager(ledger.alias).in_bulk(
            {user_model._meta.pk.to_python(t.user_pk) for t in triggers}
        )
        for trigger in triggers:
            user = users.get(user_model._meta.pk.to_python(trigger.user_pk))
            if user is None:
                continue
            result = achievement.unlock(user=user, **trigger.state)
            if result is not None:
                yield Candidate(
                    trigger.user_pk,
                    decision_of(achievement, result),
                    trigger.timestamp,
                )


def backfill(
    achievement: AchievementBase,
    *,
    dry_run: bool = False,
    batch_size: int = 500,
    on_batch: Callable[[int], None] = lambda count: None,
) -> BackfillResult:
    """Award ``achievement`` retroactively (or, with ``dry_run``, only count)."""
    check_batch_size(batch_size)
    ledger = get_ledger()
    result = BackfillResult(source=source_of(achievement))
    state = recorded_state({"source": result.source}, 1024)
    found = False
    iterator = candidates(achievement, batch_size)
    # A dry run saves nothing, so it keeps the aggregates it decided on, for a
    # user's later candidates to see the earlier ones' effect.
    decided: dict[str, Any] = {}
    while batch := list(islice(iterator, batch_size)):
        found = True
        result.examined += len(batch)
        existing = existing_user_pks(
            ledger.alias, (c.user_pk for c in batch if c.user_pk is not None)
        )
        result.skipped_users += sum(1 for c in batch if c.user_pk not in existing)
        batch = [c for c in batch if c.user_pk in existing]

        def decide(
            batch: list[Candidate] = batch,
        ) -> tuple[list[tuple[str, Effect | None]], list[Any]]:
            aggregates: dict[str, Any] = decided if dry_run else {}
            # The batch's aggregates read together (not one query per user).
            missing = {c.user_pk for c in batch} - aggregates.keys() - {None}
            aggregates.update(ledger.user_achievements(missing, achievement.id))  # type: ignore[arg-type]
            # (user, what the decision did), or (user, None): revoked before.
            effects: list[tuple[str, Effect | None]] = []
            for candidate in batch:
                user_pk = candidate.user_pk
                assert user_pk is not None  # the batch holds users that exist
                aggregate = aggregates[user_pk]
                if aggregate.revocations:
                    effects.append((user_pk, None))
                    continue
                for effect in ledger._decide(
                    aggregate, candidate.decision, TRIGGER, state, candidate.awarded_at
                ):
                    effects.append((user_pk, effect))
            # In the order of their ids, as the store's unique index on
            # (aggregate, version) keeps them: the batch's inserts then go
            # through that index's pages in order rather than at random, so
            # fewer of its pages are read from disk (in one transaction, the
            # order of the events is free; each aggregate's stay in order).
            pending = sorted(
                (a for a in aggregates.values() if a.pending_events),
                key=lambda aggregate: aggregate.id.int,
            )
            return effects, ([] if dry_run else pending)

        for user_pk, effect in ledger._retrying(
            decide, f"backfilling {achievement.id!r}"
        ):
            if effect is None:
                result.skipped_revoked += 1
            elif isinstance(effect, Outcome):
                result.levels[effect.level] += 1
                result.users.add(user_pk)
                if len(result.sample) < 10:
                    result.sample.append((user_pk, effect.level))
            elif isinstance(effect, Progress) and effect.steps >= effect.total:
                result.completed_progress += 1
        on_batch(len(batch))
    if not found and result.source == "trigger log" and not _any_triggers():
        raise NothingToBackfill(
            f"{achievement.id!r} defines no backfill() and the trigger log is empty. "
            "Define backfill(self) yielding (user_pk, level) pairs, or switch on "
            "HERO_RECORD_TRIGGERS so that calls are recorded from now on."
        )
    return result


def _any_triggers() -> bool:
    return bool(
        get_ledger().recorder.select_notifications(
            start=None, limit=1, topics=[TriggerLog.Triggered.TOPIC]
        )
    )
