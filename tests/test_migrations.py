"""hero's migrations describe its models: no change is left without one; the
initial migration is unapplied and applied again cleanly."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections

from hero.models import Achievement
from tests.conftest import Backend


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


def tables(alias: str) -> list[str]:
    return connections[alias].introspection.table_names()
