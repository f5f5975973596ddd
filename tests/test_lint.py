"""hero's code, its tests and benchmarks pass ruff's checks and are formatted by ruff;
hero's code passes mypy in strict mode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["hero", "example", "tests", "benchmarks", "dev.py"]


def tool(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    executable = tool("ruff")
    return subprocess.run(
        [executable, *args, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command", [["check"], ["format", "--check"]], ids=["check", "format"]
)
def test_ruff(command: list[str]) -> None:
    result = ruff(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    """``mypy hero`` with pyproject.toml's settings: strict, with django-stubs."""
    # The stubs' plugin imports tests.settings; with SQLite alone they need no
    # PostgreSQL server (under CI a missing one would be an error).
    env = {**os.environ, "HERO_TEST_DATABASE_URL": "sqlite://"}
    result = subprocess.run(
        [tool("mypy"), "hero"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
