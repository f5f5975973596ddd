"""Which databases a test run uses.

``HERO_TEST_DATABASE_URL`` picks them: one URL, or several separated by spaces.
By default a run uses a SQLite file, the local PostgreSQL server and the local
MariaDB (or MySQL) server (``sqlite:// postgres://postgres@127.0.0.1:5432/hero
mysql://root@127.0.0.1:3306/hero``). The first becomes Django's ``default``
alias; each other is named after its backend (``postgres``, ``mysql``).

A server that cannot be reached, or whose driver is not installed, is left out
of the run (its tests are skipped, and the report header says why), except
under CI (``CI=true``), where it is an error: CI must run every backend's tests.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dj_database_url

DEFAULT_URLS = (
    "sqlite:// postgres://postgres@127.0.0.1:5432/hero mysql://root@127.0.0.1:3306/hero"
)
VENDORS = {
    "django.db.backends.sqlite3": "sqlite",
    "django.db.backends.postgresql": "postgres",
    "django.db.backends.mysql": "mysql",
}
SERVERS = {"postgres": "PostgreSQL", "mysql": "MariaDB/MySQL"}

#: More of the PostgreSQL database's ``OPTIONS``, as a JSON object: the suite
#: runs on Django's defaults, and ``dev.py test --matrix`` runs it once more
#: with ``{"server_side_binding": true, "prepare_threshold": 5}``.
POSTGRES_OPTIONS = "HERO_TEST_POSTGRES_OPTIONS"


def _sqlite(config: dict[str, Any]) -> dict[str, Any]:
    # A file, not shared-cache memory: tests run writers in several threads,
    # and a fresh name per run keeps concurrent runs apart.
    test_name = os.path.join(tempfile.gettempdir(), f"hero-test-{os.getpid()}.sqlite3")
    config["NAME"] = config.get("NAME") or test_name
    config["TEST"] = {"NAME": test_name}
    config["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    return config


def _postgres(config: dict[str, Any]) -> dict[str, Any]:
    # No dependency on "default": a run of PostgreSQL tests alone sets up only this.
    config["TEST"] = {
        "NAME": f"test_{config['NAME']}_{os.getpid()}",
        "DEPENDENCIES": [],
    }
    config.setdefault("OPTIONS", {})["connect_timeout"] = 5
    config["OPTIONS"].update(json.loads(os.environ.get(POSTGRES_OPTIONS) or "{}"))
    return config


def _mysql(config: dict[str, Any]) -> dict[str, Any]:
    config["TEST"] = {
        "NAME": f"test_{config['NAME']}_{os.getpid()}",
        "DEPENDENCIES": [],
        "CHARSET": "utf8mb4",
        "COLLATION": "utf8mb4_unicode_ci",
    }
    config.setdefault("OPTIONS", {}).update(
        {"connect_timeout": 5, "charset": "utf8mb4"}
    )
    return config


def _unreachable(vendor: str, config: dict[str, Any]) -> str | None:
    """Why a database server cannot be used, or None when it can."""
    try:
        if vendor == "postgres":
            import psycopg

            psycopg.connect(
                host=config.get("HOST") or None,
                port=config.get("PORT") or None,
                user=config.get("USER") or None,
                password=config.get("PASSWORD") or None,
                dbname="postgres",
                connect_timeout=3,
            ).close()
        else:
            import MySQLdb

            MySQLdb.connect(
                host=config.get("HOST") or "127.0.0.1",
                port=int(config.get("PORT") or 3306),
                user=config.get("USER") or "root",
                password=config.get("PASSWORD") or "",
                connect_timeout=3,
            ).close()
    except ImportError as error:
        return f"its driver is not installed ({error})"
    except Exception as error:  # each driver's own error classes
        return str(error).strip().splitlines()[0]
    return None


def configure() -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, str]]:
    """Return (DATABASES, {backend: alias}, {backend: reason it is skipped})."""
    urls = (os.environ.get("HERO_TEST_DATABASE_URL") or DEFAULT_URLS).split()
    databases: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for url in urls:
        config = dict(dj_database_url.parse(url))
        vendor = VENDORS.get(config["ENGINE"])
        if vendor is None:
            raise ValueError(
                f"HERO_TEST_DATABASE_URL: hero is tested on SQLite, PostgreSQL and "
                f"MariaDB/MySQL, not {url!r}"
            )
        if vendor in SERVERS:
            reason = _unreachable(vendor, config)
            if reason:
                server = SERVERS[vendor]
                where = f"{config.get('HOST')}:{config.get('PORT')}"
                if os.environ.get("CI") == "true":
                    raise RuntimeError(
                        f"CI must run the {server} tests, but {server} at {where} is unreachable: {reason}"
                    )
                skipped[vendor] = (
                    f"{server} at {where} is unreachable ({reason}); its tests are skipped"
                )
                continue
            config = _postgres(config) if vendor == "postgres" else _mysql(config)
        else:
            config = _sqlite(config)
        alias = "default" if not databases else vendor
        databases[alias] = config
        aliases[vendor] = alias
    if not databases:
        raise RuntimeError("HERO_TEST_DATABASE_URL names no database this run can use")
    return databases, aliases, skipped


@contextmanager
def reopened_with(alias: str, **options: Any) -> Iterator[Any]:
    """The connection of ``alias``, closed and opened again with these
    ``OPTIONS`` for the block, and as it was after it."""
    from django.db import connections

    connection = connections[alias]
    settings_options = connection.settings_dict["OPTIONS"]
    before = dict(settings_options)
    connection.close()
    settings_options.update(options)
    connection.features.__dict__.pop("uses_server_side_binding", None)
    try:
        yield connection
    finally:
        connection.close()
        settings_options.clear()
        settings_options.update(before)
        connection.features.__dict__.pop("uses_server_side_binding", None)
