"""hero's schema as the database reports it: tables, columns, indexes and
constraints, read from each backend's own catalog, in a form that can be kept
as JSON and compared (``tests/test_schema.py``)."""

from __future__ import annotations

import re
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

#: Only hero's tables: the rest of a test database belongs to other apps.
PREFIX = "hero_"


def flavour(connection: BaseDatabaseWrapper) -> str:
    """The backend as far as DDL differs: ``sqlite``, ``postgresql``,
    ``mariadb`` or ``mysql`` (MariaDB stores JSON as text, MySQL natively)."""
    if connection.vendor == "mysql":
        return "mariadb" if connection.mysql_is_mariadb else "mysql"  # type: ignore[attr-defined]
    return str(connection.vendor)


def describe(connection: BaseDatabaseWrapper) -> dict[str, Any]:
    """Every hero table with its columns (name, type, nullability, default, and
    what the backend adds) and its constraints and indexes, each under its name
    with its columns, kind and definition."""
    readers = {"sqlite": _sqlite, "postgresql": _postgresql, "mysql": _mysql}
    with connection.cursor() as cursor:
        tables = sorted(
            t.name
            for t in connection.introspection.get_table_list(cursor)
            if t.name.startswith(PREFIX) and t.type == "t"
        )
        described = {
            table: readers[connection.vendor](connection, cursor, table)
            for table in tables
        }
    # By name: where a column is in its table is not compared. SQLite puts a
    # column that a migration altered last (it copies the table), the other
    # databases leave it in place; hero names its columns in every statement.
    for table in described.values():
        table["columns"].sort(key=lambda column: column["name"])
    return described


def _constraints(
    connection: BaseDatabaseWrapper, cursor: Any, table: str
) -> dict[str, Any]:
    """Django's view of a table's constraints and indexes: the same fields on
    every backend."""
    found = connection.introspection.get_constraints(cursor, table)
    result = {}
    for name, info in found.items():
        if re.fullmatch(r"__unnamed_constraint_\d+__|fk_\d+", name):
            # Django numbers the constraints the database leaves unnamed (a
            # column's check, SQLite's foreign keys) in column order: name them
            # by what they hold.
            kind = "check" if info["check"] else "foreign key"
            name = f"unnamed {kind} ({', '.join(info['columns'] or [])})"
        result[name] = {
            "columns": list(info["columns"] or []),
            "primary_key": bool(info["primary_key"]),
            "unique": bool(info["unique"]),
            "foreign_key": list(info["foreign_key"]) if info["foreign_key"] else None,
            "check": bool(info["check"]),
            "index": bool(info["index"]),
        }
    return dict(sorted(result.items()))


def _sqlite(connection: BaseDatabaseWrapper, cursor: Any, table: str) -> dict[str, Any]:
    # SQLite keeps a table as the statement that made it: that statement holds
    # every column, check, key and the lack of AUTOINCREMENT (plain rowids).
    cursor.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = %s "
        "ORDER BY type DESC, name",
        [table],
    )
    statements = {
        name: _sorted_definitions(sql) if kind == "table" else sql
        for kind, name, sql in cursor.fetchall()
        if sql
    }
    cursor.execute(f"PRAGMA table_info({connection.ops.quote_name(table)})")
    columns = [
        {"name": name, "type": kind, "null": not notnull, "default": default, "pk": pk}
        for _, name, kind, notnull, default, pk in cursor.fetchall()
    ]
    cursor.execute(f"PRAGMA foreign_key_list({connection.ops.quote_name(table)})")
    foreign_keys = sorted(
        [to, column, to_column, on_update, on_delete]
        for _, _, to, column, to_column, on_update, on_delete, _ in cursor.fetchall()
    )
    return {
        "columns": columns,
        "constraints": _constraints(connection, cursor, table),
        "foreign_keys": foreign_keys,
        "sql": statements,
    }


def _sorted_definitions(sql: str) -> list[str]:
    """The column and constraint definitions of a CREATE TABLE statement, each
    whole, in sorted order (where a column is in the table is not compared),
    and its table options (``WITHOUT ROWID``) if any."""
    head, _, body = re.sub(r"\s+", " ", sql).partition("(")
    definitions, depth, start, options = [], 0, 0, ""
    for i, char in enumerate(body):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or (char == "," and depth == 0):
            definitions.append(body[start:i].strip())
            start = i + 1
        if depth < 0:
            options = body[i + 1 :].strip()
            break
    return [head.strip(), *sorted(definitions), *([options] if options else [])]


def _postgresql(
    connection: BaseDatabaseWrapper, cursor: Any, table: str
) -> dict[str, Any]:
    cursor.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        [table],
    )
    columns = [
        {
            "name": name,
            "type": kind,
            "null": null,
            "default": default,
            "identity": identity,
        }
        for name, kind, null, default, identity in cursor.fetchall()
    ]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass ORDER BY conname",
        [table],
    )
    definitions = dict(cursor.fetchall())
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
        "ORDER BY indexname",
        [table],
    )
    indexes = dict(cursor.fetchall())
    return {
        "columns": columns,
        "constraints": _constraints(connection, cursor, table),
        "definitions": definitions,
        "indexes": indexes,
    }


def _mysql(connection: BaseDatabaseWrapper, cursor: Any, table: str) -> dict[str, Any]:
    cursor.execute(
        """
        SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES', COLUMN_DEFAULT, EXTRA,
               CHARACTER_SET_NAME, COLLATION_NAME
        FROM information_schema.COLUMNS
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s
        ORDER BY ORDINAL_POSITION
        """,
        [table],
    )
    columns = [
        {
            # Display widths (bigint(20)) are gone from MySQL 8.0.19 on.
            "name": name,
            "type": re.sub(r"^((?:big|small|tiny|medium)?int)\(\d+\)", r"\1", kind),
            "null": bool(null),
            "default": default,
            "extra": extra,
            "charset": charset,
            "collation": collation,
        }
        for name, kind, null, default, extra, charset, collation in cursor.fetchall()
    ]
    # MariaDB names a column's check after the column, so the same name can be
    # in several tables: it says which table; MySQL's names are unique per schema.
    same_table = (
        "AND cc.TABLE_NAME = tc.TABLE_NAME" if flavour(connection) == "mariadb" else ""
    )
    cursor.execute(
        f"""
        SELECT tc.CONSTRAINT_NAME, cc.CHECK_CLAUSE
        FROM information_schema.TABLE_CONSTRAINTS tc
        JOIN information_schema.CHECK_CONSTRAINTS cc
          ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA
          AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME {same_table}
        WHERE tc.TABLE_SCHEMA = DATABASE() AND tc.TABLE_NAME = %s
          AND tc.CONSTRAINT_TYPE = 'CHECK'
        ORDER BY tc.CONSTRAINT_NAME
        """,
        [table],
    )
    checks = dict(cursor.fetchall())
    cursor.execute(
        """
        SELECT CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE, REFERENCED_TABLE_NAME
        FROM information_schema.REFERENTIAL_CONSTRAINTS
        WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s
        ORDER BY CONSTRAINT_NAME
        """,
        [table],
    )
    foreign_keys = {name: list(rest) for name, *rest in cursor.fetchall()}
    cursor.execute(
        """
        SELECT INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, INDEX_TYPE
        FROM information_schema.STATISTICS
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s
        ORDER BY INDEX_NAME, SEQ_IN_INDEX
        """,
        [table],
    )
    indexes: dict[str, Any] = {}
    for name, non_unique, _, column, kind in cursor.fetchall():
        index = indexes.setdefault(
            name, {"unique": not non_unique, "type": kind, "columns": []}
        )
        index["columns"].append(column)
    cursor.execute(
        """
        SELECT ENGINE, TABLE_COLLATION FROM information_schema.TABLES
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s
        """,
        [table],
    )
    engine, collation = cursor.fetchone()
    return {
        "columns": columns,
        "constraints": _constraints(connection, cursor, table),
        "checks": checks,
        "foreign_keys": foreign_keys,
        "indexes": indexes,
        "engine": engine,
        "collation": collation,
    }
