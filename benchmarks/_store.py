"""A SQLite file event store of a given size, as the rebuild and audit benchmarks
build it.

One user per 10 events: each user unlocks the four achievements of
``_rebuild_achievements.py`` and is upgraded 0, 1, 2 and 3 times in them (4
``Unlocked`` and 6 ``LevelUpgraded`` events). Users are bulk-created; the events
come from hero's own ``UserAchievement`` aggregates (``start()``, then
``award()`` with rising levels) and are saved 1,000 users at a time with
``get_ledger().record()`` in ``transaction.atomic()``. Django is configured with
``HERO_PROJECTIONS = "async"``, so building writes the event store only, no read
table.

A store is grown by calling :func:`build_store` again with the next user
number: users are numbered from 0 in the order they were added, and user
number ``n`` is named ``bench-{n:07d}``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Users whose events are saved in one transaction while building the store.
BUILD_USERS_PER_TRANSACTION = 1000


def username(index: int) -> str:
    """The username of the user numbered ``index``."""
    return f"bench-{index:07d}"


def sqlite_database(path: str) -> dict[str, Any]:
    """Django's settings for the SQLite file at ``path`` (WAL,
    ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``), as hero recommends."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def configure_django(path: str, secret_key: str) -> None:
    """Set Django up on the SQLite file at ``path``, with the store's
    achievements registered."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY=secret_key,
        USE_TZ=True,
        TIME_ZONE="UTC",
        DATABASES={"default": sqlite_database(path)},
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "hero"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        HERO_DATABASE="default",
        # Building the store writes events only; the rebuilds write the tables.
        HERO_PROJECTIONS="async",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    django.setup()
    import _rebuild_achievements  # noqa: F401  (registers the achievements)


def create_users(first_index: int, count: int) -> list[str]:
    """Bulk-create users numbered ``first_index`` on; return their pks as strings."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [
            user_model(username=username(index), password="!")
            for index in range(first_index, first_index + count)
        ],
        batch_size=1000,
    )
    pks = [user.pk for user in users]
    if any(pk is None for pk in pks):
        raise SystemExit("bulk_create did not return primary keys (SQLite < 3.35?)")
    return [str(pk) for pk in pks]


def record_users(ledger: Any, first_index: int, pks: Sequence[str]) -> int:
    """Save the events of the users ``pks`` (numbered from ``first_index``) in
    one transaction; return how many."""
    from _rebuild_achievements import TRIGGER, awards
    from django.db import transaction

    from hero.events import UserAchievement

    aggregates = []
    events = 0
    for offset, user_pk in enumerate(pks):
        for achievement_id, top in awards(first_index + offset):
            aggregate = UserAchievement.start(user_pk, achievement_id)
            for level in range(1, top + 1):
                aggregate.award(level, trigger=TRIGGER, state={"points": 10**level})
            aggregates.append(aggregate)
            events += top
    with transaction.atomic():
        ledger.record(aggregates)
    return events


def build_store(first_index: int, users: int) -> tuple[int, float]:
    """Users numbered ``first_index`` to ``first_index + users - 1`` and their
    events; return (events written, seconds)."""
    from hero.ledger import get_ledger

    ledger = get_ledger()
    started = time.perf_counter()
    events = 0
    done = 0
    last_report = started
    while done < users:
        count = min(BUILD_USERS_PER_TRANSACTION, users - done)
        pks = create_users(first_index + done, count)
        events += record_users(ledger, first_index + done, pks)
        done += count
        now = time.perf_counter()
        if now - last_report >= 15:
            last_report = now
            print(f"  ... {done:,} of {users:,} users, {events:,} events", flush=True)
    return events, time.perf_counter() - started


def stored_events() -> int:
    from hero.models import StoredEvent

    return int(StoredEvent.objects.count())


def settle(path: str) -> None:
    """Fold the WAL into the database file and read the events table once, so
    every timed run starts alike (WAL empty, file in the page cache)."""
    from django.db import connections

    connections.close_all()
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute(
            "SELECT SUM(LENGTH(state)) FROM hero_stored_event"
        ).fetchone()
    finally:
        connection.close()


@contextmanager
def database_directory(keep: str | None, name: str, prefix: str) -> Iterator[str]:
    """The path of the benchmark's database file, ``name``: in ``keep`` (left
    there, any old copy removed first) or in a temporary directory removed at
    the end."""
    if keep:
        directory = Path(keep)
        directory.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            (directory / (name + suffix)).unlink(missing_ok=True)
        yield str(directory / name)
        return
    temporary = tempfile.mkdtemp(prefix=prefix)
    try:
        yield os.path.join(temporary, name)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
