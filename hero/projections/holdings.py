"""The holdings view: who holds which achievement at which level, and how many
users hold each achievement at each level."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from hero.events import UserAchievement
from hero.projections.base import Change, View, datetime_adapter
from hero.projections.catalog import ensure_catalog_rows
from hero.users import user_pk_adapter

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

Key = tuple[str, str]  # (user pk, achievement id)


class HoldingsView(View):
    name: ClassVar[str] = "holdings"
    tables: ClassVar[Sequence[str]] = (
        "hero_achievement_count",
        "hero_achievement_unlocked",
        "hero_achievement_progress",
    )

    def write(
        self, cursor: CursorWrapper, changes: Sequence[Change], users: set[str] | None
    ) -> None:
        # Fold the batch into its net effect, then write that in a few statements.
        replace: dict[Key, tuple[int, datetime, datetime]] = {}  # whole rows
        update: dict[Key, tuple[int, datetime]] = {}  # level changes of existing rows
        delete: set[Key] = set()
        progress: dict[Key, tuple[int, int, datetime]] = {}
        counts: Counter[tuple[str, int]] = Counter()
        for change in changes:
            event = change.event
            if not isinstance(event, UserAchievement.Event):
                continue
            if users is not None and event.user_pk not in users:
                continue
            key = (event.user_pk, event.achievement_id)
            if isinstance(event, UserAchievement.Unlocked):
                delete.discard(key)
                update.pop(key, None)
                replace[key] = (event.level, event.awarded_at, event.awarded_at)
                counts[(event.achievement_id, event.level)] += 1
            elif isinstance(event, UserAchievement.LevelUpgraded):
                if key in replace:
                    _, unlocked_at, _ = replace[key]
                    replace[key] = (event.level, unlocked_at, event.awarded_at)
                else:
                    update[key] = (event.level, event.awarded_at)
                counts[(event.achievement_id, event.previous_level)] -= 1
                counts[(event.achievement_id, event.level)] += 1
            elif isinstance(event, UserAchievement.Revoked):
                replace.pop(key, None)
                update.pop(key, None)
                delete.add(key)
                progress[key] = (0, 0, event.timestamp)  # progress starts again
                counts[(event.achievement_id, event.level)] -= 1
            elif isinstance(event, UserAchievement.Progressed):
                progress[key] = (event.steps, event.total, event.awarded_at)

        # Rows are new only for unlocks and progress; others' catalog entries exist.
        ensure_catalog_rows(
            cursor,
            self.datastore.alias,
            {a for _, a in replace} | {a for _, a in progress},
        )
        user_pk = user_pk_adapter(cursor.db)
        when = datetime_adapter(cursor.db)

        if delete:
            cursor.executemany(
                "DELETE FROM hero_achievement_unlocked WHERE user_id = %s AND achievement_id = %s",
                [(user_pk(u), a) for u, a in delete],
            )
        if replace:
            cursor.executemany(
                "INSERT INTO hero_achievement_unlocked "
                "(user_id, achievement_id, level, unlocked_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, achievement_id) "
                "DO UPDATE SET level = EXCLUDED.level, unlocked_at = EXCLUDED.unlocked_at, "
                "updated_at = EXCLUDED.updated_at",
                [
                    (user_pk(u), a, level, when(unlocked_at), when(updated_at))
                    for (u, a), (level, unlocked_at, updated_at) in replace.items()
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
        gone = [key for key, (steps, total, _) in progress.items() if total == 0]
        if gone:
            cursor.executemany(
                "DELETE FROM hero_achievement_progress WHERE user_id = %s AND achievement_id = %s",
                [(user_pk(u), a) for u, a in gone],
            )
        progress = {k: v for k, v in progress.items() if v[1]}
        if progress:
            cursor.executemany(
                "INSERT INTO hero_achievement_progress "
                "(user_id, achievement_id, steps, total, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, achievement_id) "
                "DO UPDATE SET steps = EXCLUDED.steps, total = EXCLUDED.total, "
                "updated_at = EXCLUDED.updated_at",
                [
                    (user_pk(u), a, steps, total, when(at))
                    for (u, a), (steps, total, at) in progress.items()
                ],
            )
        deltas = [(a, level, n) for (a, level), n in counts.items() if n]
        if deltas:
            cursor.executemany(
                "INSERT INTO hero_achievement_count (achievement_id, level, holders) "
                "VALUES (%s, %s, %s) ON CONFLICT (achievement_id, level) "
                "DO UPDATE SET holders = hero_achievement_count.holders + EXCLUDED.holders",
                deltas,
            )
