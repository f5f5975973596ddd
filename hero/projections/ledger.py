"""The ledger read model: one row per event, for audits and the admin."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from hero.events import TriggerLog, UserAchievement
from hero.models import LedgerEntry
from hero.projections.base import Change, ReadModel, datetime_adapter
from hero.store.sql import insert_missing
from hero.users import user_pk_adapter

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

KINDS: dict[type, str] = {
    UserAchievement.Unlocked: "unlocked",
    UserAchievement.LevelUpgraded: "upgraded",
    UserAchievement.Revoked: "revoked",
    UserAchievement.Progressed: "progressed",
    TriggerLog.Triggered: "triggered",
    UserAchievement.Granted: "granted",
    UserAchievement.Repeated: "repeated",
    UserAchievement.AwardRevoked: "revoked",
}


class LedgerEntries(ReadModel):
    name: ClassVar[str] = "ledger"
    tables: ClassVar[Sequence[str]] = ("hero_ledger_entry",)
    checks_users: ClassVar[bool] = False  # entries of deleted users are kept

    def write(
        self, cursor: CursorWrapper, changes: Sequence[Change], users: set[str] | None
    ) -> None:
        connection = cursor.db
        state_field = LedgerEntry._meta.get_field("state")
        user_pk = user_pk_adapter(connection)
        when = datetime_adapter(connection)
        ops = connection.ops
        rows: list[tuple[Any, ...]] = []
        for change in changes:
            event: Any = change.event
            kind = KINDS.get(type(event))
            if kind is None:
                continue
            occurred_at = getattr(event, "awarded_at", None) or event.timestamp
            if kind == "revoked":
                # The level taken away is the level before; after it, none is
                # held, or (one award of a repeatable) the level still held.
                level, previous_level = getattr(event, "held_level", None), event.level
            else:
                level = getattr(event, "level", None)
                previous_level = getattr(event, "previous_level", None)
            rows.append(
                (
                    change.position,
                    user_pk(event.user_pk),
                    getattr(event, "achievement_id", None),
                    kind,
                    level,
                    previous_level,
                    getattr(event, "trigger", ""),
                    state_field.get_db_prep_save(
                        getattr(event, "state", {}), connection
                    ),
                    getattr(event, "steps", None),
                    getattr(event, "key", None) or "",
                    getattr(event, "actor", None) or "",
                    getattr(event, "reason", None) or "",
                    when(occurred_at),
                    when(event.timestamp),
                )
            )
        if rows:
            cursor.executemany(_insert_sql(connection.vendor, ops.quote_name), rows)


_insert_statements: dict[str, str] = {}


def _insert_sql(vendor: str, quote: Callable[[str], str]) -> str:
    """The ledger entries' insert in the backend's SQL (an entry already there,
    from an earlier apply of the same event, is left as it is)."""
    statement = _insert_statements.get(vendor)
    if statement is None:
        columns = (
            "position", "user_id", "achievement_id", "kind", "level",
            "previous_level", quote("trigger"), "state", "steps", quote("key"), "actor",
            "reason", "occurred_at", "recorded_at",
        )  # fmt: skip
        statement = insert_missing(vendor, "hero_ledger_entry", columns, ("position",))
        _insert_statements[vendor] = statement
    return statement
