"""The rebuild benchmark's baseline: the holdings rows rebuilt with plain sqlite3.

No Django, no eventsourcing: read the events in order of id, in chunks,
``json.loads`` each, fold a chunk into current-state rows and write them into
``baseline_unlocked`` (a copy of ``hero_achievement_unlocked``'s schema) with
``executemany``, one transaction a chunk. About the least Python can do.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

TABLE = "baseline_unlocked"
SOURCE = "hero_achievement_unlocked"
UNLOCKED = "hero:UserAchievement.Unlocked"
UPGRADED = "hero:UserAchievement.LevelUpgraded"


def connect(path: str) -> sqlite3.Connection:
    """A connection set up as the benchmark's Django connection is: WAL,
    synchronous=NORMAL, foreign keys on; transactions are explicit."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def create_table(path: str) -> None:
    """Create ``baseline_unlocked`` (empty) from the schema of hero's table."""
    connection = connect(path)
    try:
        rows = connection.execute(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE tbl_name = ? AND sql IS NOT NULL",
            (SOURCE,),
        ).fetchall()
        statements = []
        for kind, name, sql in rows:
            sql = sql.replace(f'"{SOURCE}"', f'"{TABLE}"', 1)
            if kind == "index":
                sql = sql.replace(f'"{name}"', f'"{TABLE}_{name}"', 1)
            statements.append((kind != "table", sql))
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f'DROP TABLE IF EXISTS "{TABLE}"')
        for _, sql in sorted(statements):  # the table before its indexes
            connection.execute(sql)
        connection.execute("COMMIT")
    finally:
        connection.close()


def _when(value: dict[str, str]) -> str:
    """An encoded datetime as Django stores it in SQLite with USE_TZ: naive UTC."""
    moment = datetime.fromisoformat(value["_data_"])
    return str(moment.astimezone(UTC).replace(tzinfo=None))


def rebuild(path: str, batch_size: int) -> int:
    """Rebuild ``baseline_unlocked`` from the whole store; return the number of
    events read."""
    connection = connect(path)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f'DELETE FROM "{TABLE}"')
        connection.execute("COMMIT")
        upsert = (
            f'INSERT INTO "{TABLE}" (user_id, achievement_id, level, unlocked_at, updated_at) '
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, achievement_id) DO UPDATE SET "
            "level = excluded.level, unlocked_at = excluded.unlocked_at, "
            "updated_at = excluded.updated_at"
        )
        update = (
            f'UPDATE "{TABLE}" SET level = ?, updated_at = ? '
            "WHERE user_id = ? AND achievement_id = ?"
        )
        select = (
            "SELECT id, originator_id, originator_version, topic, state "
            "FROM hero_stored_event WHERE id > ? ORDER BY id LIMIT ?"
        )
        loads = json.loads
        last = 0
        events = 0
        while True:
            rows = connection.execute(select, (last, batch_size)).fetchall()
            if not rows:
                return events
            last = rows[-1][0]
            events += len(rows)
            # The chunk's net effect: whole rows for unlocks, level changes for
            # rows written by earlier chunks.
            replace: dict[tuple[int, str], tuple[int, str, str]] = {}
            changes: dict[tuple[int, str], tuple[int, str]] = {}
            for _, _, _, topic, state in rows:
                if topic == UNLOCKED:
                    event = loads(state)
                    key = (int(event["user_pk"]), event["achievement_id"])
                    at = _when(event["awarded_at"])
                    changes.pop(key, None)
                    replace[key] = (event["level"], at, at)
                elif topic == UPGRADED:
                    event = loads(state)
                    key = (int(event["user_pk"]), event["achievement_id"])
                    at = _when(event["awarded_at"])
                    if key in replace:
                        replace[key] = (event["level"], replace[key][1], at)
                    else:
                        changes[key] = (event["level"], at)
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                upsert,
                [
                    (u, a, level, first, at)
                    for (u, a), (level, first, at) in replace.items()
                ],
            )
            connection.executemany(
                update, [(level, at, u, a) for (u, a), (level, at) in changes.items()]
            )
            connection.execute("COMMIT")
    finally:
        connection.close()


def differences(path: str) -> tuple[int, int]:
    """Rows of hero's table missing from the baseline's, and the reverse."""
    columns = "user_id, achievement_id, level, unlocked_at, updated_at"
    query = 'SELECT COUNT(*) FROM (SELECT {0} FROM "{1}" EXCEPT SELECT {0} FROM "{2}")'
    connection = connect(path)
    try:
        missing, extra = (
            int(connection.execute(query.format(columns, *tables)).fetchone()[0])
            for tables in ((SOURCE, TABLE), (TABLE, SOURCE))
        )
    finally:
        connection.close()
    return missing, extra
