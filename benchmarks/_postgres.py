"""The PostgreSQL database of the benchmarks, and a schema of their own in it.

The database is the one named by ``HERO_BENCH_POSTGRES_URL`` (default
``postgres://postgres@127.0.0.1:5432/hero_bench``), created if missing. A
benchmark's tables go in a schema of its own, set as the connection's
``search_path``: created fresh at the start of a run and dropped at its end,
so that nothing else in that database is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/hero_bench"


def url() -> str:
    return os.environ.get("HERO_BENCH_POSTGRES_URL", DEFAULT_URL)


def database(address: str, schema: str) -> dict[str, Any]:
    """Django's settings for the database at ``address``, in ``schema``."""
    parts = urlsplit(address)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise SystemExit(
            f"HERO_BENCH_POSTGRES_URL must be a postgres:// URL, not {address!r}"
        )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "hero_bench",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": {
            "connect_timeout": 5,
            "options": f"-c search_path={schema}",
        },
    }


def connect(config: dict[str, Any], dbname: str) -> Any:
    """A psycopg connection in autocommit, outside Django."""
    import psycopg

    return psycopg.connect(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        dbname=dbname,
        connect_timeout=5,
        autocommit=True,
    )


def ensure_database(config: dict[str, Any]) -> None:
    """Create the benchmark's PostgreSQL database when it does not exist."""
    from psycopg import sql

    with connect(config, "postgres") as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (config["NAME"],)
        ).fetchone()
        if found is None:
            connection.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"]))
            )


def drop_schema(config: dict[str, Any], schema: str, *, recreate: bool) -> None:
    """Drop the benchmark's own schema (only that) and, if asked, create it empty."""
    from psycopg import sql

    name = sql.Identifier(schema)
    with connect(config, config["NAME"]) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))
        if recreate:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(name))


@contextmanager
def fresh_schema(schema: str) -> Iterator[dict[str, Any]]:
    """Django's settings for ``schema``, created empty, dropped afterwards."""
    from django.db import connections

    config = database(url(), schema)
    ensure_database(config)
    drop_schema(config, schema, recreate=True)
    try:
        yield config
    finally:
        connections.close_all()
        drop_schema(config, schema, recreate=False)


def server_settings(names: tuple[str, ...]) -> dict[str, str]:
    """Settings of the server Django's ``default`` connection is on."""
    from django.db import connection

    values = {}
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"SHOW {name}")
            values[name] = cursor.fetchone()[0]
    return values
