"""Statements whose SQL differs by backend: inserts that meet an existing row.

PostgreSQL and SQLite say ``INSERT ... ON CONFLICT (key) DO ...``; MariaDB and
MySQL say ``INSERT ... ON DUPLICATE KEY UPDATE``, where the conflict is on any
unique key (each table here has the one named). Statements are made once per
set of arguments (pass tuples), since they are built on the award's path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence


def _insert(table: str, columns: Sequence[str], rows: int = 1) -> str:
    row = f"({', '.join(['%s'] * len(columns))})"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"
    )


def _proposed(vendor: str, column: str) -> str:
    """The value the INSERT proposed for ``column``, in an update clause."""
    return f"VALUES({column})" if vendor == "mysql" else f"EXCLUDED.{column}"


def _on_conflict(vendor: str, key: Sequence[str]) -> str:
    if vendor == "mysql":
        return " ON DUPLICATE KEY UPDATE "
    return f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET "


@functools.cache
def insert_missing(
    vendor: str, table: str, columns: Sequence[str], key: Sequence[str]
) -> str:
    """Insert a row unless one with the same key exists (then change nothing)."""
    if vendor == "mysql":
        return _insert(table, columns) + f" ON DUPLICATE KEY UPDATE {key[0]} = {key[0]}"
    return _insert(table, columns) + f" ON CONFLICT ({', '.join(key)}) DO NOTHING"


@functools.cache
def upsert(
    vendor: str,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    replace: Sequence[str] = (),
    add: Sequence[str] = (),
    *,
    rows: int = 1,
) -> str:
    """Insert ``rows`` rows, or update those with the same key: columns in
    ``replace`` take the new values, columns in ``add`` add the new values to
    the stored ones."""
    sets = [f"{c} = {_proposed(vendor, c)}" for c in replace]
    stored = "" if vendor == "mysql" else f"{table}."
    sets += [f"{c} = {stored}{c} + {_proposed(vendor, c)}" for c in add]
    return _insert(table, columns, rows) + _on_conflict(vendor, key) + ", ".join(sets)
