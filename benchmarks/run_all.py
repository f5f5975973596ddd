"""Every benchmark in one run, on one machine, and a summary of the headline figures.

Runs each of :data:`BENCHMARKS` in turn (``--quick``: at small sizes), echoing
its output, then sets every benchmark's headline figures and goals side by
side, from the JSON each wrote (``--summary``); a failed one makes the exit
status 1, and the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    full: str
    quick: str
    title: str


#: Each benchmark: name | script | arguments of a full run | of a quick run | title.
BENCHMARKS = [
    Benchmark(*(part.strip() for part in line.split("|")))
    for line in """
unlock-sqlite    | unlock.py      | --repeat 7                                | --users 50 --repeat 1                     | Unlock paths, hero against pinax-badges, SQLite in WAL
unlock-delete    | unlock.py      | --journal delete --users 300 --repeat 5   | --journal delete --users 20 --repeat 1    | Unlock paths, hero against pinax-badges, SQLite as Django sets it up
unlock-postgres  | unlock.py      | --database postgres --repeat 5            | --database postgres --users 50 --repeat 1 | Unlock paths, hero against pinax-badges, PostgreSQL
unlock-mysql     | unlock.py      | --database mysql --repeat 5               | --database mysql --users 50 --repeat 1    | Unlock paths, hero against pinax-badges, MariaDB
rebuild          | rebuild.py     |                                           | --events 10000                            | Rebuild: hero_rebuild against a plain-sqlite3 baseline
rebuild-postgres | rebuild.py     | --database postgres                       | --database postgres --events 1000         | Rebuild: hero_rebuild against a plain-psycopg baseline
backfill         | backfill.py    |                                           | --users 1000                              | Backfill: hero_backfill, and unlock() calls in one transaction
audit            | audit.py       |                                           | --events 10000 --repeat 20 --passes 1     | Audit of one user as the store grows
concurrency      | concurrency.py |                                           | --quick --users 30                        | Concurrent unlocks on PostgreSQL
latency          | latency.py     |                                           | --awards 20                               | Asynchronous projections: from a commit to the read tables, PostgreSQL
growth           | growth.py      |                                           | --awards 1200 --block 200                 | An award's time as the store grows, PostgreSQL
linking          | linking.py     |                                           | --events 2000                             | Linking a backlog of events to the chain, PostgreSQL
""".strip().splitlines()
]
NAMES = tuple(benchmark.name for benchmark in BENCHMARKS)
SUMMARY_HEADERS = ("benchmark", "figure", "value", "goal", "met?")


@dataclass
class Outcome:
    benchmark: Benchmark
    command: list[str]
    status: int
    seconds: float
    output: str
    summary: dict[str, Any] | None = None
    rows: list[list[str]] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _harness.Options(
        "Run every hero benchmark in sequence and summarise them."
    )
    text = "small sizes: a smoke run of about a minute (the checks still run)"
    parser.add("--quick", False, text)
    text = f"run only these, comma-separated, of: {', '.join(NAMES)}"
    parser.add("--only", None, text, metavar="NAME,...")
    text = "also write the run (command, machine, outputs, summary) as Markdown"
    parser.add("--markdown", None, text, metavar="FILE")
    options = parser.parse_args(argv)
    options.names = NAMES
    if options.only:
        options.names = tuple(name.strip() for name in options.only.split(","))
        unknown = sorted(set(options.names) - set(NAMES))
        if unknown:
            parser.error(
                f"no benchmark named {', '.join(unknown)}; choose from {NAMES}"
            )
    return options


def run(benchmark: Benchmark, quick: bool, directory: str) -> Outcome:
    """Run one benchmark, echoing its output; return it with its summary."""
    summary_path = Path(directory) / f"{benchmark.name}.json"
    arguments = (benchmark.quick if quick else benchmark.full).split()
    script = _harness.HERE / benchmark.script
    command = [sys.executable, str(script), *arguments, "--summary", str(summary_path)]
    shown = ["benchmarks/" + benchmark.script, *arguments]
    print(f"\n=== {benchmark.title}: {shlex.join(shown)}\n", flush=True)
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(
        command,
        cwd=_harness.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    seconds = time.perf_counter() - started
    outcome = Outcome(benchmark, shown, process.returncode, seconds, "".join(lines))
    if summary_path.exists():
        outcome.summary = json.loads(summary_path.read_text())
    if outcome.status != 0 or outcome.summary is None:
        outcome.rows = [["run", f"FAILED (exit {outcome.status})"]]
    else:
        checks = "passed" if outcome.summary["checks_passed"] else "FAILED"
        outcome.rows = [*outcome.summary["headline"], ["correctness checks", checks]]
    print(f"\n=== {benchmark.name}: exit {outcome.status}, {seconds:.0f} s", flush=True)
    return outcome


def summary_rows(outcomes: Sequence[Outcome], *, every_name: bool) -> list[list[str]]:
    """One row per headline figure, the benchmark named on its first row."""
    rows = []
    for outcome in outcomes:
        for number, row in enumerate(outcome.rows):
            name = outcome.benchmark.name if every_name or number == 0 else ""
            rows.append([name, *row, "", ""][: len(SUMMARY_HEADERS)])
    return rows


def machine_description() -> list[str]:
    """The machine and the versions, with the PostgreSQL server's."""
    try:
        config = _harness.server_database("postgres", options="-c search_path=public")
        with _harness.postgres_connect(config, "postgres") as connection:
            postgres = connection.execute("SHOW server_version").fetchone()[0]
    except Exception as error:  # no server: say so, the run still stands
        postgres = f"not reachable ({type(error).__name__})"
    pinax = _harness.package_version("pinax-badges")
    return [
        _harness.machine_line(),
        _harness.versions_line(f"PostgreSQL {postgres}", f"pinax-badges {pinax}"),
    ]


def write_markdown(
    path: str, argv: Sequence[str], outcomes: Sequence[Outcome], started: str
) -> None:
    command = shlex.join([".venv/bin/python", "benchmarks/run_all.py", *argv])
    rows = summary_rows(outcomes, every_name=True)
    out = [
        f"# Benchmark run\n\nStarted {started}; command, from the repository's root:\n",
        f"```sh\n{command}\n```\n\nMachine and versions:\n",
        *[f"* {line}" for line in machine_description()],
        "\n## Summary\n",
        *_harness.table_lines(SUMMARY_HEADERS, rows, markdown=True),
    ]
    for outcome in outcomes:
        output = outcome.output.rstrip("\n")
        out.append(
            f"\n## {outcome.benchmark.title}\n\n`{shlex.join(outcome.command)}`: exit "
            f"{outcome.status}, {outcome.seconds:.0f} s\n\n```text\n"
            f"{output}\n```"
        )
    Path(path).write_text("\n".join(out) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(arguments)
    kind = "quick" if options.quick else "full"
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    clock = time.perf_counter()
    print(f"Benchmarks, {kind} run, started {started}")
    print("\n".join(machine_description()))
    with tempfile.TemporaryDirectory(prefix="hero-bench-summaries-") as directory:
        outcomes = [
            run(benchmark, options.quick, directory)
            for benchmark in BENCHMARKS
            if benchmark.name in options.names
        ]
    print(
        f"\n=== Summary ({kind} run, {time.perf_counter() - clock:.0f} s; "
        f"load average at the end {_harness.load_average()})\n"
    )
    rows = summary_rows(outcomes, every_name=False)
    _harness.print_table(SUMMARY_HEADERS, rows, left=len(SUMMARY_HEADERS))
    if options.markdown:
        write_markdown(options.markdown, arguments, outcomes, started)
        print(f"\nWritten to {options.markdown}")
    failed = [o.benchmark.name for o in outcomes if o.status != 0 or not o.summary]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
