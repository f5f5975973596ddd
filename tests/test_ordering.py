"""hero.store.ordering: one function takes the ordering lock, and a write kept
waiting for it past the timeout gets a clear error and records nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections, transaction
from django.test import override_settings

import hero
from hero.events import Outcome
from hero.exceptions import StoreBusy
from hero.models import StoredEvent
from tests.conftest import Backend

HERO = Path(__file__).resolve().parent.parent / "hero"


@contextmanager
def lock_held_elsewhere(backend: Backend) -> Iterator[None]:
    """Another connection holds the store's ordering lock (SQLite: the write lock)."""
    config = connections[backend.alias].settings_dict
    if backend.name == "postgres":
        other: Any = psycopg.connect(
            host=config["HOST"],
            port=config["PORT"] or None,
            user=config["USER"],
            dbname=config["NAME"],
        )
        other.execute("LOCK TABLE hero_stored_event IN EXCLUSIVE MODE")
    elif backend.name == "mysql":
        import MySQLdb

        other = MySQLdb.connect(
            host=config["HOST"] or "127.0.0.1",
            port=int(config["PORT"] or 3306),
            user=config["USER"],
            password=config["PASSWORD"],
            database=config["NAME"],
        )
        other.cursor().execute(
            "INSERT INTO hero_ordering_lock (id) VALUES (1) "
            "ON DUPLICATE KEY UPDATE id = id"
        )
    else:
        other = sqlite3.connect(config["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK") if backend.name == "sqlite" else other.rollback()
        other.close()


@contextmanager
def sqlite_busy_timeout(backend: Backend, milliseconds: int) -> Iterator[None]:
    """SQLite waits for its write lock as long as the connection's timeout."""
    if backend.name != "sqlite":
        yield
        return
    connection = connections[backend.alias]
    connection.ensure_connection()
    connection.connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
    try:
        yield
    finally:
        timeout = connection.settings_dict["OPTIONS"].get("timeout", 5)
        connection.connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


@pytest.mark.django_db(transaction=True)
def test_a_write_kept_waiting_past_the_lock_timeout_records_nothing(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: a user, and another transaction that holds the ordering lock.
    user = make_user()
    with (
        override_settings(HERO_LOCK_TIMEOUT=0.2),
        sqlite_busy_timeout(backend, 200),
        lock_held_elsewhere(backend),
    ):
        # Act: an award has to wait for the lock.
        with pytest.raises(StoreBusy, match="ordering lock") as error:
            hero.achievements.unlock("score_changed", user=user, points=100)
    # Assert: a clear hero error, nothing recorded; once free, the award goes in.
    setting = "'timeout' database option" if backend.name == "sqlite" else "0.2s"
    assert setting in str(error.value)
    assert not StoredEvent.objects.using(backend.alias).exists()
    outcomes = hero.achievements.unlock("score_changed", user=user, points=100)
    assert outcomes == [Outcome("points", 2, None)]


def test_the_callers_own_lock_timeout_applies_again_after_the_lock(
    backend: Backend, make_user: Any
) -> None:
    if backend.name == "sqlite":
        pytest.skip("SQLite's wait is the connection's timeout, which hero leaves")
    own = {
        "postgres": (
            "SET LOCAL lock_timeout = '1234ms'",
            "SHOW lock_timeout",
            "1234ms",
        ),
        "mysql": (
            "SET SESSION innodb_lock_wait_timeout = 7",
            "SELECT @@innodb_lock_wait_timeout",
            7,
        ),
    }
    setting, reading, value = own[backend.name]
    # Arrange: the caller's transaction has a lock timeout of its own.
    user = make_user()
    with transaction.atomic(using=backend.alias):
        with connections[backend.alias].cursor() as cursor:
            cursor.execute(setting)
            # Act: an award takes the ordering lock with hero's timeout.
            hero.achievements.unlock("score_changed", user=user, points=100)
            # Assert: the rest of the caller's transaction has its own again.
            cursor.execute(reading)
            assert cursor.fetchone() == (value,)


def test_only_the_ordering_module_takes_the_lock() -> None:
    # The ordering guarantee depends on one function: nothing else takes the lock.
    takers = sorted(
        str(path.relative_to(HERO.parent))
        for path in HERO.rglob("*.py")
        if "LOCK TABLE" in path.read_text()
        or "hero_ordering_lock (" in path.read_text()
    )
    assert takers == ["hero/store/ordering.py"]
