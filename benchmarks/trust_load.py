"""Long runs of hero's trust tests (tests/test_trust_*.py, the ones CI runs):
more seconds of load, more workers, more hypothesis examples than CI can
afford. It sets their knobs -- HERO_TRUST_LOAD_SECONDS (CI: 3),
HERO_TRUST_WORKERS (CI: 8), HERO_TRUST_EXAMPLES (CI: 25) -- and runs pytest on
them, so a long run checks exactly what a short one does, for longer. See
benchmarks/README-trust.md; arguments after ``--`` go to pytest, and the exit
status is pytest's::

    .venv/bin/python benchmarks/trust_load.py --seconds 600 --workers 16 --database postgres
    .venv/bin/python benchmarks/trust_load.py --suite properties --examples 2000
    .venv/bin/python benchmarks/trust_load.py --seconds 60 -- -k projection_worker
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from _harness import ROOT, Options

SUITES = {
    "load": "tests/test_trust_concurrency.py",
    "faults": "tests/test_trust_faults.py",
    "input": "tests/test_trust_input.py",
    "properties": "tests/test_trust_properties.py",
}


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The runner's options, and the arguments after ``--`` (for pytest)."""
    parser = Options(
        "Run hero's trust tests with long settings.",
        epilog="Arguments after -- are passed to pytest.",
    )
    parser.add("--seconds", 120.0, "Seconds of load per load test")
    parser.add("--workers", 8, "Unlock worker processes per load test")
    parser.add("--examples", 500, "Hypothesis examples per property test")
    databases = ["sqlite", "postgres", "both"]
    parser.add("--database", "both", "Backends to run on", choices=databases)
    url = "postgres://postgres@127.0.0.1:5432/hero"
    url = os.environ.get("HERO_TRUST_POSTGRES_URL", url)
    parser.add("--postgres-url", url, "PostgreSQL server")
    parser.add("--suite", "load", "Which trust tests", choices=[*SUITES, "all"])
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    return parser.parse_args(argv[:cut]), argv[cut + 1 :]


def main(argv: Sequence[str]) -> int:
    args, pytest_args = parse(argv)
    urls = {"sqlite": "sqlite://", "postgres": args.postgres_url}.get(
        args.database, f"sqlite:// {args.postgres_url}"
    )
    env = dict(os.environ)
    env.update(
        HERO_TRUST_LOAD_SECONDS=str(args.seconds),
        HERO_TRUST_WORKERS=str(args.workers),
        HERO_TRUST_EXAMPLES=str(args.examples),
        HERO_TEST_DATABASE_URL=urls,
    )
    files = [path for name, path in SUITES.items() if args.suite in (name, "all")]
    command = [sys.executable, "-m", "pytest", *files, "-p", "no:cacheprovider"]
    command += ["-rA", "-s", "--durations=20", *pytest_args]
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
