"""The holdings read model: who holds which achievement at which level, and how many
users hold each achievement at each level."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from hero.catalog import ensure_catalog_rows
from hero.events import UserAchievement
from hero.projections.base import Change, ReadModel, datetime_adapter
from hero.store.sql import upsert
from hero.users import user_pk_adapter

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

Key = tuple[str, str]  # (user pk, achievement id)


@functools.cache
def _upserts(vendor: str) -> dict[str, str]:
    """The holdings tables' upserts in the backend's SQL."""
    return {
        "unlocked": upsert(
            vendor,
            "hero_achievement_unlocked",
            (
                "user_id",
                "achievement_id",
                "level",
                "unlocked_at",
                "updated_at",
                "times",
            ),
            ("user_id", "achievement_id"),
            replace=("level", "unlocked_at", "updated_at", "times"),
        ),
        "progress": upsert(
            vendor,
            "hero_achievement_progress",
            ("user_id", "achievement_id", "steps", "total", "updated_at"),
            ("user_id", "achievement_id"),
            replace=("steps", "total", "updated_at"),
        ),
        "count": upsert(
            vendor,
            "hero_achievement_count",
            ("achievement_id", "level", "holders"),
            ("achievement_id", "level"),
            add=("holders",),
        ),
    }


#: PostgreSQL, in the caller's transaction: a count's change waits in its own
#: row until the transaction's COMMIT, where the trigger ``hero_settle_count``
#: (migration 0003) adds it to the count, so the count's row is locked for the
#: commit alone, not for the rest of the caller's transaction. For a gain,
#: the same statement makes the count's row if missing (holding 0 until then),
#: so the row is there for the rest of the transaction (the admin lists
#: counts); an existing row is not locked by this.
_COUNT_CHANGE = (
    "WITH made AS (INSERT INTO hero_achievement_count (achievement_id, level, "
    "holders) SELECT %s, %s, 0 WHERE %s > 0 ON CONFLICT (achievement_id, level) "
    "DO NOTHING) INSERT INTO hero_achievement_count_change (achievement_id, "
    "level, holders) VALUES (%s, %s, %s)"
)


@dataclass(slots=True)
class HoldingsDelta:
    """The net effect of a run of events on the holdings tables: what
    :meth:`Holdings.write` writes, and (folded from the first event on) what
    ``hero_verify`` expects the tables to hold."""

    #: Whole rows: (level, unlocked at, updated at, times).
    replace: dict[Key, tuple[int, datetime, datetime, int]] = field(
        default_factory=dict
    )
    #: Level changes of rows from before the run: (level, updated at).
    update: dict[Key, tuple[int, datetime]] = field(default_factory=dict)
    #: Change in the number of awards of rows from before the run (repeatable
    #: achievements).
    times: Counter[Key] = field(default_factory=Counter)
    delete: set[Key] = field(default_factory=set)
    #: (steps, total, updated at); a total of 0 removes the row.
    progress: dict[Key, tuple[int, int, datetime]] = field(default_factory=dict)
    #: Change in the number of holders per (achievement, level).
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)

    def add(self, event: UserAchievement.Event) -> None:
        """Fold one more event into the delta."""
        key = (event.user_pk, event.achievement_id)
        replace, update, counts = self.replace, self.update, self.counts
        # A grant is an unlock, or an upgrade from the level held before it.
        if isinstance(event, UserAchievement.Unlocked) or (
            isinstance(event, UserAchievement.Granted) and event.previous_level is None
        ):
            self.delete.discard(key)
            update.pop(key, None)
            self.times.pop(key, None)
            replace[key] = (event.level, event.awarded_at, event.awarded_at, 1)
            counts[(event.achievement_id, event.level)] += 1
        elif (
            isinstance(event, UserAchievement.LevelUpgraded | UserAchievement.Granted)
            and event.previous_level is not None
        ):
            self._relevel(key, event.previous_level, event.level, event.awarded_at, 0)
        elif isinstance(event, UserAchievement.Repeated):
            self._relevel(
                key, event.previous_level, event.held_level, event.awarded_at, 1
            )
        elif isinstance(event, UserAchievement.AwardRevoked) and event.held_level:
            self._relevel(key, event.level, event.held_level, event.timestamp, -1)
        elif isinstance(event, UserAchievement.Revoked | UserAchievement.AwardRevoked):
            replace.pop(key, None)
            update.pop(key, None)
            self.times.pop(key, None)
            self.delete.add(key)
            if isinstance(event, UserAchievement.Revoked):
                self.progress[key] = (0, 0, event.timestamp)  # progress starts again
            counts[(event.achievement_id, event.level)] -= 1
        elif isinstance(event, UserAchievement.Progressed):
            self.progress[key] = (event.steps, event.total, event.awarded_at)
        elif isinstance(event, UserAchievement.Forgotten):
            # The holding and the progress go, as with a revocation.
            replace.pop(key, None)
            update.pop(key, None)
            self.times.pop(key, None)
            self.delete.add(key)
            self.progress[key] = (0, 0, event.timestamp)
            if event.level is not None:
                counts[(event.achievement_id, event.level)] -= 1

    def _relevel(
        self, key: Key, previous: int, level: int, at: datetime, more: int
    ) -> None:
        """A held row goes from level ``previous`` to ``level`` (an upgrade, or
        a repeatable achievement's award added or revoked) with ``more`` awards."""
        if key in self.replace:
            old, unlocked_at, updated_at, times = self.replace[key]
            changed_at = at if level != old else updated_at
            self.replace[key] = (level, unlocked_at, changed_at, times + more)
        else:
            if level != previous:
                self.update[key] = (level, at)
            if more:
                self.times[key] += more
        if level != previous:
            self.counts[(key[1], previous)] -= 1
            self.counts[(key[1], level)] += 1

    def fold(self, changes: Sequence[Change], users: set[str] | None) -> None:
        """Fold hero's events among ``changes``, leaving out users not in
        ``users`` (when given)."""
        for change in changes:
            event = change.event
            if not isinstance(event, UserAchievement.Event):
                continue
            if users is not None and event.user_pk not in users:
                continue
            self.add(event)


class Holdings(ReadModel):
    name: ClassVar[str] = "holdings"
    topics: ClassVar[frozenset[str] | None] = frozenset(
        cls.TOPIC
        for cls in vars(UserAchievement).values()
        if isinstance(cls, type)
        and issubclass(cls, UserAchievement.Event)
        and hasattr(cls, "TOPIC")
    )
    tables: ClassVar[Sequence[str]] = (
        "hero_achievement_count_change",
        "hero_achievement_count",
        "hero_achievement_unlocked",
        "hero_achievement_progress",
    )

    def write(
        self, cursor: CursorWrapper, changes: Sequence[Change], users: set[str] | None
    ) -> None:
        # Fold the batch into its net effect, then write that in a few statements.
        delta = HoldingsDelta()
        delta.fold(changes, users)
        replace, update, delete = delta.replace, delta.update, delta.delete
        more = {key: n for key, n in delta.times.items() if n}
        progress, counts = delta.progress, delta.counts

        # Rows are new only for unlocks and progress; others' catalog entries exist.
        ensure_catalog_rows(
            cursor,
            self.datastore.alias,
            {a for _, a in replace} | {a for _, a in progress},
        )
        user_pk = user_pk_adapter(cursor.db)
        when = datetime_adapter(cursor.db)
        sql = _upserts(cursor.db.vendor)

        if delete:
            cursor.executemany(
                "DELETE FROM hero_achievement_unlocked WHERE user_id = %s AND achievement_id = %s",
                [(user_pk(u), a) for u, a in delete],
            )
        if replace:
            cursor.executemany(
                sql["unlocked"],
                [
                    (user_pk(u), a, level, when(unlocked_at), when(updated_at), n)
                    for (u, a), (level, unlocked_at, updated_at, n) in replace.items()
                ],
            )
        if update:
            cursor.executemany(
                "UPDATE hero_achievement_unlocked SET level = %s, updated_at = %s "
                "WHERE user_id = %s AND achievement_id = %s",
                [
                    (level, when(at), user_pk(u), a)
                    for (u, a), (level, at) in update.items()
                ],
            )
        if more:
            cursor.executemany(
                "UPDATE hero_achievement_unlocked SET times = times + %s "
                "WHERE user_id = %s AND achievement_id = %s",
                [(n, user_pk(u), a) for (u, a), n in more.items()],
            )
        gone = [key for key, (steps, total, _) in progress.items() if total == 0]
        if gone:
            cursor.executemany(
                "DELETE FROM hero_achievement_progress WHERE user_id = %s AND achievement_id = %s",
                [(user_pk(u), a) for u, a in gone],
            )
        progress = {k: v for k, v in progress.items() if v[1]}
        if progress:
            cursor.executemany(
                sql["progress"],
                [
                    (user_pk(u), a, steps, total, when(at))
                    for (u, a), (steps, total, at) in progress.items()
                ],
            )
        if cursor.db.vendor != "postgresql":
            if deltas := _in_order(counts):
                cursor.executemany(sql["count"], deltas)
            return
        # In a transaction of hero's own, added with its COMMIT; in the
        # caller's, left in change rows for the trigger to settle at its COMMIT.
        pending = self.datastore.at_commit(_PENDING_COUNTS, Counter, _add_counts)
        if pending is not None:
            pending.update(counts)
        elif deltas := _in_order(counts):
            cursor.executemany(_COUNT_CHANGE, [d + d for d in deltas])


#: The scratch key of the count changes a transaction of hero's own adds at
#: its COMMIT (PostgreSQL).
_PENDING_COUNTS = "holdings.counts"


def _in_order(counts: Counter[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """The non-zero changes, in one order, so that writers changing several
    counts at once never deadlock."""
    return sorted((a, level, n) for (a, level), n in counts.items() if n)


def _add_counts(cursor: CursorWrapper, counts: Counter[tuple[str, int]]) -> None:
    """Add a transaction's count changes to the counts, with its COMMIT."""
    deltas = _in_order(counts)
    if deltas:
        cursor.executemany(_upserts(cursor.db.vendor)["count"], deltas)
