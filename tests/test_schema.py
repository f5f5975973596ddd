"""hero's migrations make the schema kept in ``tests/snapshots``, on every
backend: changing what they create is a deliberate change of that file.

The snapshots were written from the database migrated by hero's migrations
(``HERO_WRITE_SCHEMA=1 .venv/bin/python -m pytest tests/test_schema.py`` writes
them again, for the backends of the run; review the difference before
committing it). Each holds, per table, the columns in order with their types,
nullability and defaults, every constraint and index with its definition, and
the permissions ``migrate`` creates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from tests.conftest import Backend
from tests.schema import describe, flavour

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def permissions(alias: str) -> dict[str, list[list[str]]]:
    """The permissions ``migrate`` creates for hero's models: those of the
    models as the migrations leave them, not as the code declares them."""
    state = MigrationLoader(connections[alias]).project_state()
    result = {}
    for model in state.apps.get_app_config("hero").get_models():
        meta = model._meta
        made = [
            [f"{action}_{meta.model_name}", f"Can {action} {meta.verbose_name_raw}"]
            for action in meta.default_permissions
        ]
        made += [[codename, str(name)] for codename, name in meta.permissions]
        result[meta.model_name] = made
    return dict(sorted(result.items()))


def current(alias: str) -> dict[str, Any]:
    # Through JSON, so that tuples and lists compare as the file holds them.
    schema = {
        "tables": describe(connections[alias]),
        "permissions": permissions(alias),
    }
    return json.loads(json.dumps(schema))


@pytest.mark.django_db
def test_the_migrations_make_the_schema_of_the_snapshot(backend: Backend) -> None:
    # Arrange: the test database, migrated by hero's migrations.
    name = flavour(connections[backend.alias])
    path = SNAPSHOTS / f"schema-{name}.json"

    # Act: read its schema back from the database's catalog.
    schema = current(backend.alias)

    if os.environ.get("HERO_WRITE_SCHEMA") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    if not path.exists():
        pytest.skip(f"no schema snapshot for {name}; HERO_WRITE_SCHEMA=1 writes it")

    # Assert: table by table, so that a difference names its table.
    expected = json.loads(path.read_text())
    assert sorted(schema["tables"]) == sorted(expected["tables"])
    for table, described in schema["tables"].items():
        assert described == expected["tables"][table], table
    assert schema["permissions"] == expected["permissions"]
    permitted = {
        codename for made in schema["permissions"].values() for codename, _ in made
    }
    assert {"grant_achievement", "revoke_achievement"} <= permitted
