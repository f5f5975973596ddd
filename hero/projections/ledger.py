"""The ledger read model: one row per event, for audits and the admin."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings

from hero.events import TriggerLog, UserAchievement
from hero.events.personal import personal_fields
from hero.projections.base import Change, ReadModel, datetime_adapter
from hero.store.sql import insert_missing
from hero.users import INTEGER_PKS, user_model, user_pk_adapter

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
    UserAchievement.Forgotten: "forgotten",
}


class LedgerEntries(ReadModel):
    name: ClassVar[str] = "ledger"
    tables: ClassVar[Sequence[str]] = ("hero_ledger_entry",)
    checks_users: ClassVar[bool] = False  # entries of deleted users are kept
    topics: ClassVar[frozenset[str] | None] = frozenset(
        cls.TOPIC  # type: ignore[attr-defined]
        for cls in KINDS
    )

    def copy(self, cursor: CursorWrapper, after: int, until: int) -> set[int]:
        """Copy the store's events at positions in (``after``, ``until``] with
        one ``INSERT ... SELECT``; return the positions written.

        Events at an older class version (an upcast may change them), and every
        event where the copy cannot be made in SQL (MariaDB and MySQL, a user
        model whose pk is not an integer, a cipher or compressor on the stored
        state), are left to :meth:`write`.
        """
        # Lazy, as in hero.projections.base: the read side reading the store.
        from hero.ledger import get_ledger

        connection = cursor.db
        mapper = get_ledger().mapper
        if not getattr(mapper, "plain_json", False):
            return set()
        statement = _copy_sql(connection.vendor, _stores_utc(connection))
        if statement is None:
            return set()
        if connection.vendor == "sqlite":
            _register_sqlite_datetime(connection)
        cursor.execute(statement, [after, until])
        return {row[0] for row in cursor.fetchall()}

    def write(
        self, cursor: CursorWrapper, changes: Sequence[Change], users: set[str] | None
    ) -> None:
        connection = cursor.db
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
                    getattr(event, "steps", None),
                    _payload(event),
                    when(occurred_at),
                    when(event.timestamp),
                )
            )
        if rows:
            cursor.executemany(_insert_sql(connection.vendor, ops.quote_name), rows)


def _payload(event: Any) -> str:
    """An entry's payload: the event's sealed personal fields as stored, never
    opened here; for an event stored before sealing, its plain values (until
    its user is forgotten)."""
    state = event.__dict__
    sealed = state.get("sealed")
    if sealed is not None or "sealed" in state:
        return sealed or ""
    values = {
        name: state[name] for name in personal_fields(type(event)) if state.get(name)
    }
    if not values:
        return ""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)


_insert_statements: dict[str, str] = {}


def _insert_sql(vendor: str, quote: Callable[[str], str]) -> str:
    """The ledger entries' insert in the backend's SQL (an entry already there,
    from an earlier apply of the same event, is left as it is)."""
    statement = _insert_statements.get(vendor)
    if statement is None:
        columns = (
            "position", "user_id", "achievement_id", "kind", "level",
            "previous_level", quote("trigger"), "steps", "payload", "occurred_at",
            "recorded_at",
        )  # fmt: skip
        statement = insert_missing(vendor, "hero_ledger_entry", columns, ("position",))
        _insert_statements[vendor] = statement
    return statement


# Copying events with SQL -----------------------------------------------------
#
# Every event is one ledger entry, so a rebuild copies the store into the
# ledger with an ``INSERT ... SELECT`` that reads the stored JSON with the
# database's JSON functions: the same rows as ``LedgerEntries.write``, with no
# event decoded in Python and the recorded state copied as it is stored.


def _literal(value: str | int) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def _by_topic(values: dict[str, str | int]) -> str:
    """``CASE topic WHEN ... THEN ... END`` over the ledger's event classes."""
    whens = " ".join(f"WHEN '{t}' THEN {_literal(v)}" for t, v in values.items())
    return f"CASE topic {whens} END"


def _stores_utc(connection: Any) -> bool:
    """Whether Django stores an aware datetime on this connection as its UTC
    time (``USE_TZ``, and no other ``TIME_ZONE`` for the database)."""
    return bool(settings.USE_TZ) and connection.timezone_name == "UTC"


@functools.cache
def _copy_sql(vendor: str, utc: bool) -> str | None:
    """The ledger's ``INSERT ... SELECT`` for store positions in (%s, %s],
    returning the positions written; None where the copy is not made in SQL."""
    pk = user_model()._meta.pk
    target = pk.target_field if pk.is_relation else pk
    if target.get_internal_type() not in INTEGER_PKS:
        return None
    if vendor == "sqlite":
        if sqlite3.sqlite_version_info < (3, 38):  # ->> and RETURNING
            return None

        def value(path: str) -> str:
            return f"j ->> '$.{path}'"

        def when(iso: str) -> str:
            # Django's text of the naive UTC time; other zones through Python.
            if not utc:
                return f"hero_db_datetime({iso})"
            return (
                f"CASE WHEN {iso} LIKE '%%+00:00' "
                f"THEN replace(substr({iso}, 1, length({iso}) - 6), 'T', ' ') "
                f"ELSE hero_db_datetime({iso}) END"
            )

        number, user = value, value("user_pk")
        # Events stored with sealing have a "sealed" member (JSON null when
        # nothing was personal); older ones are left to write().
        has_sealed = "json_type(j, '$.sealed') IS NOT NULL"
        source, fence = "CAST(state AS TEXT)", ""
    elif vendor == "postgresql":

        def value(path: str) -> str:
            return f"(j #>> '{{{path.replace('.', ',')}}}')"

        def number(path: str) -> str:
            return f"{value(path)}::integer"

        def when(iso: str) -> str:
            return f"{iso}::timestamptz"

        user = f"{value('user_pk')}::bigint"
        has_sealed = "j ? 'sealed'"
        source = "convert_from(state, 'UTF8')::jsonb"
        # OFFSET 0 keeps the planner from folding the subquery into the
        # outer SELECT, where each use of j would parse the JSON again.
        fence = " OFFSET 0"
    else:
        return None
    kinds: dict[str, str | int] = {c.TOPIC: k for c, k in KINDS.items()}  # type: ignore[attr-defined]
    versions: dict[str, str | int] = {
        c.TOPIC: getattr(c, "class_version", 1)  # type: ignore[attr-defined]
        for c in KINDS
    }
    revoked = ", ".join(f"'{t}'" for t, kind in kinds.items() if kind == "revoked")
    # A revocation's entry: the level after it (if any) and the level before.
    is_revoked = f"CASE WHEN topic IN ({revoked})"
    level = f"{is_revoked} THEN {number('held_level')} ELSE {number('level')} END"
    previous = (
        f"{is_revoked} THEN {number('level')} ELSE {number('previous_level')} END"
    )
    recorded = value("timestamp._data_")
    occurred = f"COALESCE({value('awarded_at._data_')}, {recorded})"
    columns = (
        "position", "user_id", "achievement_id", "kind", "level", "previous_level",
        '"trigger"', "steps", "payload", "occurred_at", "recorded_at",
    )  # fmt: skip
    values = (
        "id", user, value("achievement_id"), _by_topic(kinds), level, previous,
        f"COALESCE({value('trigger')}, '')", number("steps"),
        f"COALESCE({value('sealed')}, '')", when(occurred), when(recorded),
    )  # fmt: skip
    # Events at an older class version are left out: the mapper upcasts them.
    # So are events of classes with personal fields stored before sealing.
    personal = ", ".join(
        f"'{c.TOPIC}'"  # type: ignore[attr-defined]
        for c in KINDS
        if personal_fields(c)
    )
    return (
        f"INSERT INTO hero_ledger_entry ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM ("
        f"SELECT id, topic, {source} AS j FROM hero_stored_event "
        f"WHERE id > %s AND id <= %s{fence}) AS event "
        f"WHERE {_by_topic(versions)} = COALESCE({number('class_version')}, 1) "
        f"AND (topic NOT IN ({personal}) OR {has_sealed}) "
        "ON CONFLICT (position) DO NOTHING RETURNING position"
    )


def _register_sqlite_datetime(connection: Any) -> None:
    """``hero_db_datetime(iso)``: an ISO datetime as Django stores it on this
    connection, for the ledger's copy."""
    raw = connection.connection
    if getattr(connection, "_hero_datetime_connection", None) is raw:
        return
    when = datetime_adapter(connection)
    raw.create_function(
        "hero_db_datetime",
        1,
        lambda iso: None if iso is None else when(datetime.fromisoformat(iso)),
        deterministic=True,
    )
    connection._hero_datetime_connection = raw
