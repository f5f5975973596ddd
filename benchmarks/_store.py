"""The SQLite event store of a given size that the rebuild and audit benchmarks
build: one user per 10 events, each holding four achievements reached through 4
``Unlocked`` and 6 ``LevelUpgraded`` events, written through hero's own
aggregates and ledger, 1,000 users per transaction, with
``HERO_PROJECTIONS = "async"`` (events only, no read table).
"""

from __future__ import annotations

import sqlite3
import time

import _harness

#: Users whose events are saved in one transaction while building the store.
BUILD_USERS_PER_TRANSACTION = 1000
ACHIEVEMENT_IDS: tuple[str, ...] = ("bench-a", "bench-b", "bench-c", "bench-d")
EVENTS_PER_USER = 10
TRIGGER = "points_awarded"


def awards(user_index: int) -> list[tuple[str, int]]:
    """(achievement id, highest level) for user ``user_index``: one event a level."""
    return [
        (achievement_id, 1 + (user_index + k) % len(ACHIEVEMENT_IDS))
        for k, achievement_id in enumerate(ACHIEVEMENT_IDS)
    ]


def username(index: int) -> str:
    """The username of the user numbered ``index``."""
    return f"bench-{index:07d}"


def database_of(target: str) -> dict[str, object]:
    """Django's settings for a store: a SQLite file's path, or
    ``postgres:SCHEMA`` for a schema on ``HERO_BENCH_POSTGRES_URL``'s database."""
    if target.startswith("postgres:"):
        schema = target.partition(":")[2]
        return _harness.server_database("postgres", options=f"-c search_path={schema}")
    return _harness.sqlite_database(target)


def configure_django(target: str, name: str, *, migrate: bool = False) -> None:
    """Set Django up on the store at ``target`` (:func:`database_of`), its
    achievements registered."""
    from hero import AchievementBase, achievements

    database = database_of(target)
    _harness.setup_django(database, name, migrate=migrate, HERO_PROJECTIONS="async")
    for achievement_id in ACHIEVEMENT_IDS:  # never asked: events are built directly
        attributes = {"id": achievement_id, "title": achievement_id.title()}
        attributes.update(events=[TRIGGER], unlock=lambda self, **state: None)
        class_name = f"Bench_{achievement_id.replace('-', '_')}"
        achievements.register(type(class_name, (AchievementBase,), attributes))


class _Unsealed:
    """Stands in for hero's sealer: each event's personal fields stay plain,
    stored as an event with nothing personal is (``"sealed": null``), so that
    the store differs from a sealed one only by the encryption and the keys."""

    @staticmethod
    def seal(events: list[object], read: object = None) -> dict[object, bytes]:
        from hero.events.personal import personal_fields

        for event in events:
            if personal_fields(type(event)):
                event.__dict__["sealed"] = None
        return {}  # no data keys made


def record_users(first_index: int, count: int, *, sealed: bool = True) -> int:
    """Create ``count`` users from ``first_index`` on and save their events
    (with ``sealed`` false, their personal fields stay plain)."""
    from django.db import transaction

    from hero.events import UserAchievement
    from hero.ledger import get_ledger

    names = [username(first_index + offset) for offset in range(count)]
    aggregates = []
    events = 0
    for offset, user in enumerate(_harness.create_users(names)):
        for achievement_id, top in awards(first_index + offset):
            aggregate = UserAchievement.start(str(user.pk), achievement_id)
            for level in range(1, top + 1):
                aggregate.award(level, trigger=TRIGGER, state={"points": 10**level})
            aggregates.append(aggregate)
            events += top
    ledger = get_ledger()
    sealer = ledger.sealer
    try:
        if not sealed:
            ledger.sealer = _Unsealed()  # type: ignore[assignment]
        with transaction.atomic():
            ledger.record(aggregates)
    finally:
        ledger.sealer = sealer
    return events


def grow(size: int, *, sealed: bool = True) -> None:
    """Add users and their events up to ``size`` events, and check the count."""
    users = _harness.stored_events() // EVENTS_PER_USER
    new_users = size // EVENTS_PER_USER - users
    print(f"Building: {new_users:,} more users and their events", flush=True)
    started = last_report = time.perf_counter()
    written = done = 0
    while done < new_users:
        count = min(BUILD_USERS_PER_TRANSACTION, new_users - done)
        written += record_users(users + done, count, sealed=sealed)
        done += count
        if time.perf_counter() - last_report >= 15:
            last_report = time.perf_counter()
            print(
                f"  ... {done:,} of {new_users:,} users, {written:,} events", flush=True
            )
    seconds = time.perf_counter() - started
    count = _harness.stored_events()
    if count != size:
        raise SystemExit(f"the store has {count} events, not {size}")
    print(
        f"  hero_stored_event has {count:,} rows ({written:,} written in "
        f"{seconds:.1f} s, {written / seconds:,.0f} events/s)",
        flush=True,
    )


def settle(path: str) -> None:
    """Checkpoint the WAL and read the events: every timed run starts alike."""
    _harness.close_connections()
    if path.startswith("postgres:"):
        return
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        read_all = "SELECT SUM(LENGTH(state)) FROM hero_stored_event"
        connection.execute(read_all).fetchone()
    finally:
        connection.close()
