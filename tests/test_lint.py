"""hero's code, its tests and benchmarks pass ruff's checks and are formatted by ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["hero", "example", "tests", "benchmarks", "dev.py"]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
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
