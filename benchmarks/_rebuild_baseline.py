"""The rebuild benchmark's baseline: the rebuilt tables with plain ``sqlite3`` or
plain psycopg.

No Django, no eventsourcing: read the events in order of id, in chunks,
``json.loads`` each, fold a chunk into current-state rows and write the same
tables ``hero_rebuild`` writes (holdings, counts, one ledger entry per event)
into copies of them (:data:`TABLES`), with ``executemany``, one transaction a
chunk. About the least Python can do; it knows the two topics of the store.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from typing import Any

#: hero's tables and the baseline's copies of them.
TABLES = {
    "hero_achievement_unlocked": "baseline_unlocked",
    "hero_achievement_count": "baseline_count",
    "hero_ledger_entry": "baseline_ledger_entry",
}
#: The columns compared, per hero table.
COMPARED = {
    "hero_achievement_unlocked": "user_id, achievement_id, level, unlocked_at, "
    "updated_at, times",
    "hero_achievement_count": "achievement_id, level, holders",
    "hero_ledger_entry": "position, user_id, achievement_id, kind, level, "
    'previous_level, "trigger", steps, payload, occurred_at, recorded_at',
}
UNLOCKED = "hero:UserAchievement.Unlocked"
UPGRADED = "hero:UserAchievement.LevelUpgraded"


class Database:
    """One connection, SQLite file or PostgreSQL schema, in autocommit (the
    transactions are explicit), with SQL written with ``?`` placeholders."""

    def __init__(self, target: str) -> None:
        self.postgres = target.startswith("postgres:")
        if self.postgres:
            import _harness

            schema = target.partition(":")[2]
            config = _harness.server_database("postgres")
            self.connection: Any = _harness.postgres_connect(config, config["NAME"])
            self.connection.execute(f'SET search_path TO "{schema}"')
        else:
            self.connection = sqlite3.connect(target, isolation_level=None, timeout=30)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                self.connection.execute(f"PRAGMA {pragma}")

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def execute(self, statement: str, params: Any = ()) -> Any:
        return self.connection.execute(self.sql(statement), params)

    def executemany(self, statement: str, rows: list[Any]) -> None:
        if rows:
            self.connection.cursor().executemany(self.sql(statement), rows)

    def when(self, value: dict[str, str]) -> Any:
        """An encoded datetime as a column value: psycopg takes the aware
        datetime; SQLite gets the text of its naive UTC time, as Django stores it."""
        moment = datetime.fromisoformat(value["_data_"])
        if self.postgres:
            return moment
        return str(moment.astimezone(UTC).replace(tzinfo=None))

    def close(self) -> None:
        self.connection.close()


def create_tables(target: str) -> None:
    """Create the copies of hero's tables (empty), with their indexes."""
    database = Database(target)
    try:
        database.execute("BEGIN")
        for source, table in TABLES.items():
            database.execute(f'DROP TABLE IF EXISTS "{table}"')
            if database.postgres:
                database.execute(
                    f'CREATE TABLE "{table}" (LIKE "{source}" INCLUDING ALL)'
                )
                # LIKE leaves the foreign keys out; hero's tables check them.
                keys = database.execute(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = ?::regclass AND contype = 'f'",
                    (source,),
                ).fetchall()
                for name, definition in keys:
                    database.execute(
                        f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_{name}" '
                        f"{definition}"
                    )
                continue
            rows = database.execute(
                "SELECT type, name, sql FROM sqlite_master "
                "WHERE tbl_name = ? AND sql IS NOT NULL",
                (source,),
            ).fetchall()
            for kind, name, sql in sorted(rows, key=lambda row: row[0] != "table"):
                sql = sql.replace(f'"{source}"', f'"{table}"', 1)
                if kind == "index":
                    sql = sql.replace(f'"{name}"', f'"{table}_{name}"', 1)
                database.execute(sql)
        database.execute("COMMIT")
    finally:
        database.close()


def rebuild(target: str, batch_size: int) -> int:
    """Rebuild the baseline's tables from the whole store; return the number of
    events read."""
    unlocked, count, ledger = TABLES.values()
    database = Database(target)
    try:
        database.execute("BEGIN")
        for table in TABLES.values():
            database.execute(f'DELETE FROM "{table}"')
        database.execute("COMMIT")
        upsert = (
            f'INSERT INTO "{unlocked}" (user_id, achievement_id, level, unlocked_at, '
            "updated_at, times) VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (user_id, "
            "achievement_id) DO UPDATE SET level = excluded.level, "
            "unlocked_at = excluded.unlocked_at, updated_at = excluded.updated_at"
        )
        update = (
            f'UPDATE "{unlocked}" SET level = ?, updated_at = ? '
            "WHERE user_id = ? AND achievement_id = ?"
        )
        add = (
            f'INSERT INTO "{count}" (achievement_id, level, holders) VALUES (?, ?, ?) '
            "ON CONFLICT (achievement_id, level) DO UPDATE SET "
            f'holders = "{count}".holders + excluded.holders'
        )
        insert_entry = (
            f'INSERT INTO "{ledger}" (position, user_id, achievement_id, kind, level, '
            'previous_level, "trigger", steps, payload, occurred_at, recorded_at) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)"
        )
        select = (
            "SELECT id, topic, state FROM hero_stored_event WHERE id > ? "
            "ORDER BY id LIMIT ?"
        )
        loads, when = json.loads, database.when
        last = events = 0
        while rows := database.execute(select, (last, batch_size)).fetchall():
            last = rows[-1][0]
            events += len(rows)
            # The chunk's net effect: whole rows for unlocks, level changes for
            # rows written by earlier chunks; counts by increments.
            replace: dict[tuple[int, str], tuple[int, Any, Any]] = {}
            changes: dict[tuple[int, str], tuple[int, Any]] = {}
            counts: Counter[tuple[str, int]] = Counter()
            entries = []
            for position, topic, state in rows:
                event = loads(state)
                user, achievement = int(event["user_pk"]), event["achievement_id"]
                key, level = (user, achievement), event["level"]
                at, recorded = when(event["awarded_at"]), when(event["timestamp"])
                if topic == UNLOCKED:
                    changes.pop(key, None)
                    replace[key] = (level, at, at)
                    counts[(achievement, level)] += 1
                    kind, previous = "unlocked", None
                elif topic == UPGRADED:
                    previous, kind = event["previous_level"], "upgraded"
                    if key in replace:
                        replace[key] = (level, replace[key][1], at)
                    else:
                        changes[key] = (level, at)
                    counts[(achievement, previous)] -= 1
                    counts[(achievement, level)] += 1
                else:
                    raise ValueError(f"the baseline knows no topic {topic!r}")
                entry = (position, user, achievement, kind, level, previous)
                # The personal fields as stored: sealed (or null, nothing personal).
                entries.append(
                    (*entry, event["trigger"], event["sealed"] or "", at, recorded)
                )
            database.execute("BEGIN")
            database.executemany(upsert, [(*key, *row) for key, row in replace.items()])
            database.executemany(update, [(*row, *key) for key, row in changes.items()])
            database.executemany(add, [(*key, n) for key, n in counts.items() if n])
            database.executemany(insert_entry, entries)
            database.execute("COMMIT")
        return events
    finally:
        database.close()


def differences(target: str) -> dict[str, tuple[int, int]]:
    """Per hero table: its rows missing from the baseline's copy, and the reverse
    (counts of no holders left out)."""
    database = Database(target)
    state = "state" if database.postgres else "json(state)"
    found = {}
    try:
        for source, copy in TABLES.items():
            columns = COMPARED[source].format(state)
            where = " WHERE holders <> 0" if source.endswith("count") else ""
            query = 'SELECT COUNT(*) FROM (SELECT {0} FROM "{1}"{3} EXCEPT SELECT {0} FROM "{2}"{3}) AS d'
            found[source] = tuple(
                int(database.execute(query.format(columns, a, b, where)).fetchone()[0])
                for a, b in ((source, copy), (copy, source))
            )
    finally:
        database.close()
    return found  # type: ignore[return-value]
