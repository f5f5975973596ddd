"""Long runs of hero's trust tests: more seconds of load, more workers, more
hypothesis examples than CI can afford.

The tests are the ones CI runs (tests/test_trust_*.py); this runner only sets
their knobs and runs pytest on them, so a long run checks exactly what a short
one does, for longer:

    HERO_TRUST_LOAD_SECONDS  seconds each load test hammers unlock()   (CI: 3)
    HERO_TRUST_WORKERS       unlock worker processes (and threads)     (CI: 8)
    HERO_TRUST_EXAMPLES      hypothesis examples per property test     (CI: 25)

Run it from the repository's root (see benchmarks/README-trust.md)::

    .venv/bin/python benchmarks/trust_load.py --seconds 300
    .venv/bin/python benchmarks/trust_load.py --seconds 600 --workers 16 --database postgres
    .venv/bin/python benchmarks/trust_load.py --suite properties --examples 2000
    .venv/bin/python benchmarks/trust_load.py --seconds 60 -- -k projection_worker

Arguments after ``--`` go to pytest. The exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = {
    "load": ["tests/test_trust_concurrency.py"],
    "faults": ["tests/test_trust_faults.py"],
    "input": ["tests/test_trust_input.py"],
    "properties": ["tests/test_trust_properties.py"],
}
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/hero"


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description="Run hero's trust tests with long settings.",
        epilog="Arguments after -- are passed to pytest.",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=120.0,
        help="Seconds of load per load test (default 120).",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=8,
        help="Unlock worker processes per load test (default 8).",
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=500,
        help="Hypothesis examples per property test (default 500).",
    )
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres", "both"],
        default="both",
        help="Backends to run on (default both).",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("HERO_TRUST_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"PostgreSQL server (default {DEFAULT_POSTGRES}).",
    )
    parser.add_argument(
        "--suite",
        choices=[*SUITES, "all"],
        default="load",
        help="Which trust tests to run (default load).",
    )
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    return parser.parse_args(argv[:cut]), argv[cut + 1 :]


def main(argv: Sequence[str]) -> int:
    args, pytest_args = parse(argv)
    urls = {
        "sqlite": "sqlite://",
        "postgres": args.postgres_url,
        "both": f"sqlite:// {args.postgres_url}",
    }[args.database]
    env = dict(os.environ)
    env.update(
        HERO_TRUST_LOAD_SECONDS=str(args.seconds),
        HERO_TRUST_WORKERS=str(args.workers),
        HERO_TRUST_EXAMPLES=str(args.examples),
        HERO_TEST_DATABASE_URL=urls,
    )
    files = [
        f
        for name, paths in SUITES.items()
        if args.suite in (name, "all")
        for f in paths
    ]
    command = [
        sys.executable,
        "-m",
        "pytest",
        *files,
        "-p",
        "no:cacheprovider",
        "-rA",
        "-s",
        "--durations=20",
        *pytest_args,
    ]
    print(
        f"trust run: {args.suite}, {args.seconds:.0f}s of load, {args.workers} workers, "
        f"{args.examples} examples, databases: {urls}",
        flush=True,
    )
    started = time.monotonic()
    status = subprocess.call(command, cwd=ROOT, env=env)
    print(
        f"trust run finished in {time.monotonic() - started:.0f}s with status {status}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
