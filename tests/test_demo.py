"""The demo (README's first command) runs, on SQLite and on PostgreSQL, twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def demo_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'demo.sqlite3'}"
        return
    if "postgres" not in settings.BACKEND_ALIASES:
        pytest.skip(
            settings.SKIPPED_BACKENDS.get("postgres", "no PostgreSQL in this run")
        )
    import psycopg

    config = settings.DATABASES[settings.BACKEND_ALIASES["postgres"]]
    name = f"hero_demo_{uuid.uuid4().hex[:8]}"
    server = dict(
        host=config["HOST"], port=config["PORT"], user=config["USER"], dbname="postgres"
    )
    with psycopg.connect(**server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{config['USER']}@{config['HOST']}:{config['PORT']}/{name}"
    finally:
        with psycopg.connect(**server, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_demo(url: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo_project.settings"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "example" / "demo.py"),
            "--users",
            "60",
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_demo_runs_and_running_it_again_changes_nothing(
    demo_database_url: str,
) -> None:
    first = run_demo(demo_database_url)
    assert "60 users created" in first
    assert "The read tables match the event store" in first
    assert "History of demo" in first and "Holds:" in first

    second = run_demo(demo_database_url)
    assert "0 users created, 60 already there." in second
    assert "recorded 0 changes" in second
    assert "The read tables match the event store" in second
