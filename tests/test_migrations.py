"""hero's migrations describe its models: no change is left without one; they
are unapplied and applied again cleanly, and a store of the initial schema
migrates and still verifies."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

import hero
from hero.models import Achievement, AchievementCount, StoredEvent
from hero.store.chain import link_committed
from tests.conftest import Backend
from tests.databases import reopened_with


@pytest.mark.django_db(databases="__all__")
def test_no_model_change_lacks_a_migration() -> None:
    out = StringIO()

    # Exits with status 1 (SystemExit) when a migration is missing.
    call_command("makemigrations", "hero", "--check", "--dry-run", stdout=out)

    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_hero_migrates_to_zero_and_back(backend: Backend) -> None:
    # Arrange: hero's tables, made by its migration.
    alias = backend.alias
    assert "hero_stored_event" in tables(alias)

    # Act: unapply it, which drops them (and writes no catalog: there is none).
    call_command("migrate", "hero", "zero", database=alias, verbosity=0)
    try:
        # Assert: nothing of hero is left.
        assert [t for t in tables(alias) if t.startswith("hero_")] == []
    finally:
        # Act: apply it again.
        call_command("migrate", "hero", database=alias, verbosity=0)

    # Assert: the tables are back, and the catalog is written.
    assert "hero_stored_event" in tables(alias)
    assert Achievement.objects.using(alias).exists()


@pytest.mark.django_db(transaction=True)
def test_hero_migrates_to_zero_and_back_with_server_side_binding(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("an option of Django's PostgreSQL backend")
    # Arrange: the connection opened again with Django's server_side_binding
    # option, with which psycopg sends statements and parameters apart, and
    # with every statement prepared (PostgreSQL refuses several commands in a
    # prepared statement).
    alias = backend.alias
    with reopened_with(alias, server_side_binding=True, prepare_threshold=0) as db:
        # Act: unapply hero's migrations and apply them again, their
        # PostgreSQL functions and triggers included.
        call_command("migrate", "hero", "zero", database=alias, verbosity=0)
        call_command("migrate", "hero", database=alias, verbosity=0)
        binding = type(db.connection.cursor()).__name__

        # Assert: the connection did bind on the server, and hero works on it.
        assert binding == "ServerBindingCursor"
        outcomes = hero.achievements.unlock(
            "score_changed", user=make_user(), points=100
        )
        assert [outcome.level for outcome in outcomes] == [2]
        out = StringIO()
        call_command("hero_verify", stdout=out)
        assert "1 events chained" in out.getvalue()


def tables(alias: str) -> list[str]:
    return connections[alias].introspection.table_names()


@pytest.mark.django_db(transaction=True)
def test_a_store_of_the_initial_schema_migrates_and_verifies(
    backend: Backend, django_user_model: Any
) -> None:
    # Arrange: a store as the initial schema holds it (every event linked as
    # it was written, the counts in their rows), with awards, upgrades and a
    # revocation of users of their own.
    alias = backend.alias
    users = [
        django_user_model.objects.db_manager(alias).create_user(f"user{n}")
        for n in range(3)
    ]
    for points in (10, 100):
        for user in users:
            hero.achievements.unlock("score_changed", user=user, points=points)
    hero.achievements.revoke(users[0], "points", reason="tests")
    link_committed(alias)
    call_command("migrate", "hero", "0001_initial", database=alias, verbosity=0)
    try:
        columns = [
            c.name
            for c in connections[alias].introspection.get_table_description(
                connections[alias].cursor(), "hero_stored_event"
            )
        ]
        assert "seal" not in columns
        assert "hero_achievement_count_change" not in tables(alias)
        before = stored(alias)
    finally:
        # Act: migrate it to the current schema.
        call_command("migrate", "hero", database=alias, verbosity=0)

    # Assert: positions, links and read tables are as they were, and verify...
    assert stored(alias) == before
    out = StringIO()
    call_command("hero_verify", stdout=out)
    assert f"{len(before)} events chained" in out.getvalue()
    # ...and so does the store once the current code has written to it.
    hero.achievements.unlock("score_changed", user=users[0], points=10)
    out = StringIO()
    call_command("hero_verify", stdout=out)
    assert f"{len(before) + 1} events chained" in out.getvalue()
    counts = AchievementCount.objects.using(alias).holders(["points"])
    assert {key: n for key, n in counts.items() if n} == {
        ("points", 1): 1,
        ("points", 2): 2,
    }


def stored(alias: str) -> list[tuple[Any, ...]]:
    """Every event's position, aggregate, version and link."""
    rows = StoredEvent.objects.using(alias).order_by("id")
    return [
        (position, originator, version, bytes(chain))
        for position, originator, version, chain in rows.values_list(
            "id", "originator_id", "originator_version", "chain"
        )
    ]


@pytest.mark.django_db(transaction=True)
def test_events_left_unlinked_under_0010_are_linked_after_0011(
    backend: Backend, django_user_model: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    from unittest import mock

    from django.db import transaction

    # Arrange: a store of linked events taken back to 0010, and then awards
    # whose writers did not link them (as after a crash).
    alias = backend.alias
    users = [
        django_user_model.objects.db_manager(alias).create_user(f"user{n}")
        for n in range(4)
    ]
    for user in users[:2]:
        hero.achievements.unlock("score_changed", user=user, points=10)
    link_committed(alias)
    call_command("migrate", "hero", "0010", database=alias, verbosity=0)
    try:
        assert "hero_stored_event_unlinked" in indexes(alias)
        with mock.patch("hero.store.recorders.link_after_commit", return_value=0):
            for user in users[2:]:
                with transaction.atomic(using=alias):
                    hero.achievements.unlock("score_changed", user=user, points=10)
        unlinked = StoredEvent.objects.using(alias).filter(chain__isnull=True)
        assert unlinked.count() == 2
    finally:
        # Act: migrate to the current schema.
        call_command("migrate", "hero", database=alias, verbosity=0)

    # Assert: the index is gone; the linker finds the two events after the
    # last link, and the chain verifies.
    assert "hero_stored_event_unlinked" not in indexes(alias)
    assert link_committed(alias) == 2
    out = StringIO()
    call_command("hero_verify", stdout=out)
    assert "4 events chained" in out.getvalue()


def indexes(alias: str) -> set[str]:
    with connections[alias].cursor() as cursor:
        return set(
            connections[alias].introspection.get_constraints(
                cursor, "hero_stored_event"
            )
        )


@pytest.mark.django_db(transaction=True)
def test_processes_not_yet_upgraded_still_read_every_event_to_link(
    backend: Backend, django_user_model: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    from django.test import override_settings

    from hero.store.ordering import LINKER_LOCK

    # Arrange: a linked event, then five left to the worker.
    alias = backend.alias
    users = [
        django_user_model.objects.db_manager(alias).create_user(f"user{n}")
        for n in range(6)
    ]
    hero.achievements.unlock("score_changed", user=users[0], points=10)
    link_committed(alias)
    with override_settings(HERO_PROJECTIONS="async"):
        for user in users[1:]:
            hero.achievements.unlock("score_changed", user=user, points=10)

    # Act: read them as the code before 0014 does, three arguments.
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT event_position FROM hero_unlinked(%s, true, false)", [LINKER_LOCK]
        )
        positions = [position for (position,) in cursor.fetchall()]

    # Assert: the last link (no position), then all five, in order.
    unlinked = StoredEvent.objects.using(alias).filter(chain__isnull=True)
    assert positions[0] is None
    assert positions[1:] == sorted(unlinked.values_list("id", flat=True))
    assert len(positions) == 6
