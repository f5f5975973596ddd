"""hero's migrations describe its models: no change is left without one."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db(databases="__all__")
def test_no_model_change_lacks_a_migration() -> None:
    out = StringIO()

    # Exits with status 1 (SystemExit) when a migration is missing.
    call_command("makemigrations", "hero", "--check", "--dry-run", stdout=out)

    assert "No changes detected" in out.getvalue()
