#!/usr/bin/env python3
"""Set up and run hero's demo or test suite on a machine with only python3.

    python3 dev.py demo [--database-url URL]   # the demo project, on SQLite by default
    python3 dev.py test [PYTEST ARGS ...]      # the whole test suite
    python3 dev.py test --matrix [PYTEST ARGS ...]
        # the suite on each supported combination in turn: Python 3.11 with
        # Django 5.2 (in .venv), then Python 3.13 with Django 6.1, its
        # PostgreSQL connections binding on the server and preparing statements

The first run creates ``.venv`` and installs hero with its test extras into it;
later runs reinstall only when ``pyproject.toml`` has changed. MariaDB's driver
(mysqlclient) is built from source and needs the client library's headers
(Debian: ``apt-get install libmariadb-dev pkg-config``); without them, the
MariaDB tests are skipped and the report header says why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Combination:
    """A Python and a Django to test hero with, each in a virtualenv of its own."""

    python: str  # "" for the Python running this script
    django: str  # "" for what pyproject.toml resolves to
    venv: str
    #: Environment variables of the test run (see tests/databases.py).
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def bin(self) -> Path:
        return ROOT / self.venv / ("Scripts" if os.name == "nt" else "bin")

    @property
    def python_version(self) -> str:
        return self.python or f"{sys.version_info[0]}.{sys.version_info[1]}"

    @property
    def label(self) -> str:
        more = "".join(f", {name}={value}" for name, value in self.environment)
        return f"Python {self.python_version}, Django {self.django}{more}"


_PREPARED = '{"server_side_binding": true, "prepare_threshold": 5}'

#: What ``dev.py test`` runs: this Python, with Django 5.2 LTS.
DEFAULT = Combination(python="", django=">=5.2,<5.3", venv=".venv")
MATRIX = (
    Combination(python="3.11", django=">=5.2,<5.3", venv=".venv"),
    # PostgreSQL as sites that have psycopg bind parameters on the server and
    # prepare statements have it (Django's default is neither).
    Combination(
        python="3.13",
        django=">=6.1,<6.2",
        venv=".venv-py3.13-django6.1",
        environment=(("HERO_TEST_POSTGRES_OPTIONS", _PREPARED),),
    ),
)


def python_executable(version: str) -> tuple[str, dict[str, str]]:
    """A Python ``version`` interpreter and the environment to run it in: the
    one on PATH, or pyenv's (``PYENV_VERSION``); a clear exit if there is none."""
    env = dict(os.environ)
    if not version or sys.version_info[:2] == tuple(map(int, version.split("."))):
        return sys.executable, env
    if shutil.which("pyenv"):
        installed = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True
        ).stdout.split()
        matching = sorted(v for v in installed if v.startswith(f"{version}."))
        if matching:
            env["PYENV_VERSION"] = matching[-1]
    candidate = shutil.which(f"python{version}")
    if candidate:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            env=env,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate, env
    raise SystemExit(
        f"dev.py: the test matrix needs Python {version}, which this machine does "
        f"not have (no python{version} on PATH, nor a pyenv version {version}.x). "
        f"Install it, e.g. `pyenv install {version}`."
    )


def ensure_environment(combination: Combination) -> None:
    python = combination.bin / "python"
    stamp = ROOT / combination.venv / ".hero-installed"
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes()
        + f"{combination.python_version} {combination.django}".encode()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return
    if not python.exists():
        print(f"Creating {combination.venv} ({combination.label}) ...", flush=True)
        interpreter, env = python_executable(combination.python)
        subprocess.run(
            [interpreter, "-m", "venv", str(ROOT / combination.venv)],
            check=True,
            env=env,
        )
    print(
        f"Installing hero and its test dependencies into {combination.venv} ...",
        flush=True,
    )
    pip = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    django = [f"Django{combination.django}"]
    subprocess.run([*pip, "--editable", f"{ROOT}[test]", *django], check=True)
    # MariaDB's driver is compiled here: without the client headers, go on
    # without it (its tests are then skipped, or under CI an error).
    if subprocess.run([*pip, "--editable", f"{ROOT}[mysql]", *django]).returncode:
        print(
            "dev.py: mysqlclient could not be installed (it needs the MariaDB client "
            "headers: apt-get install libmariadb-dev pkg-config); the MariaDB tests "
            "will be skipped.",
            flush=True,
        )
    stamp.write_text(wanted)


def run(combination: Combination, *args: str) -> int:
    environment = {**os.environ, **dict(combination.environment)}
    return subprocess.run(
        [str(combination.bin / "python"), *args], cwd=ROOT, env=environment
    ).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        ensure_environment(DEFAULT)
        return run(DEFAULT, str(ROOT / "example" / "demo.py"), *rest)
    if "--matrix" not in rest:
        ensure_environment(DEFAULT)
        return run(DEFAULT, "-m", "pytest", *rest)
    rest = [arg for arg in rest if arg != "--matrix"]
    failed = []
    for combination in MATRIX:
        ensure_environment(combination)
        print(f"\n== {combination.label} ==", flush=True)
        if run(combination, "-m", "pytest", *rest):
            failed.append(combination.label)
    if failed:
        print(f"\ndev.py: the suite failed on: {'; '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
