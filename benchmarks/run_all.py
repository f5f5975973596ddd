"""Every benchmark in one run, on one machine, and a summary of the headline figures.

Runs, one after the other, each as a child process of the same Python
(``sys.executable``; run this with ``.venv/bin/python``), and prints each one's
output as it comes:

    unlock (SQLite)       unlock.py --repeat 7
    unlock (PostgreSQL)   unlock.py --database postgres --repeat 5
    rebuild               rebuild.py                     (1,000,000 events)
    audit                 audit.py                       (10,000 to 1,000,000 events)
    concurrency           concurrency.py                 (1, 2 and 4 workers)

With ``--quick`` each runs at a small size instead (a smoke run of a minute or
so: the figures mean little, the checks still run). Each benchmark writes its
headline figures to a JSON file (its ``--summary`` option); at the end a table
sets them side by side with their goals. With ``--markdown FILE`` the whole
run -- the command, the machine, every benchmark's output and the summary --
is also written to FILE as Markdown.

The PostgreSQL benchmarks use ``HERO_BENCH_POSTGRES_URL`` (default
``postgres://postgres@127.0.0.1:5432/hero_bench``), each in a schema of its
own that it drops at the end. A benchmark that fails (a failed check, or no
PostgreSQL) is reported and the others still run; the exit status is then 1.

Run it from the repository's root::

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME,...]
        [--markdown FILE.md]

The full run takes about 10 minutes on a 2-core machine; ``--quick`` under half
a minute.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _machine import (  # noqa: E402
    cpu_model,
    hero_revision,
    load_average,
    package_version,
    usable_cpus,
)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "unlock-sqlite",
        "Unlock paths, hero against pinax-badges, SQLite",
        "unlock.py",
        ("--repeat", "7"),
        ("--users", "50", "--repeat", "1"),
    ),
    Benchmark(
        "unlock-postgres",
        "Unlock paths, hero against pinax-badges, PostgreSQL",
        "unlock.py",
        ("--database", "postgres", "--repeat", "5"),
        ("--database", "postgres", "--users", "50", "--repeat", "1"),
    ),
    Benchmark(
        "rebuild",
        "Rebuild: hero_rebuild against a plain-sqlite3 baseline",
        "rebuild.py",
        (),
        ("--events", "10000"),
    ),
    Benchmark(
        "audit",
        "Audit of one user as the store grows",
        "audit.py",
        (),
        ("--events", "10000", "--repeat", "20", "--passes", "1"),
    ),
    Benchmark(
        "concurrency",
        "Concurrent unlocks on PostgreSQL",
        "concurrency.py",
        (),
        ("--users", "30", "--repeat", "1"),
    ),
)
NAMES = tuple(benchmark.name for benchmark in BENCHMARKS)


@dataclass
class Outcome:
    benchmark: Benchmark
    command: list[str]
    status: int
    seconds: float
    output: str
    summary: dict[str, Any] | None = None
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)


# -- options ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run every hero benchmark in sequence and summarise them.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a smoke run of about a minute (the checks still run)",
    )
    parser.add_argument(
        "--only",
        metavar="NAME,...",
        help=f"run only these, comma-separated, of: {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write the run (command, machine, outputs, summary) as Markdown",
    )
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


# -- running ---------------------------------------------------------------


def run(benchmark: Benchmark, quick: bool, directory: str) -> Outcome:
    """Run one benchmark, echoing its output; return it with its summary."""
    summary_path = Path(directory) / f"{benchmark.name}.json"
    arguments = benchmark.quick if quick else benchmark.full
    command = [
        sys.executable,
        str(HERE / benchmark.script),
        *arguments,
        "--summary",
        str(summary_path),
    ]
    shown = ["benchmarks/" + benchmark.script, *arguments]
    print(f"\n=== {benchmark.title}: {shlex.join(shown)}\n", flush=True)
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(
        command,
        cwd=ROOT,
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
    summary = None
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    outcome = Outcome(
        benchmark, shown, process.returncode, seconds, "".join(lines), summary
    )
    outcome.rows = headline_rows(outcome)
    print(
        f"\n=== {benchmark.name}: exit {process.returncode}, {seconds:.0f} s",
        flush=True,
    )
    return outcome


# -- the summary -----------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def unlock_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for path in summary["paths"].values():
        hero = path["rate"].get("hero")
        pinax = path["rate"].get("pinax")
        if hero and pinax:
            rows.append(
                (
                    f"{path['label']}: hero/pinax calls/s",
                    f"{hero / pinax:.2f} ({hero:,.0f} / {pinax:,.0f})",
                    "",
                    "",
                )
            )
    first = summary["paths"].get("b")
    if first:
        peaks = first["peak_kb"]
        rows.append(
            (
                "(b) first award: peak Python memory of one call, hero / pinax",
                " / ".join(
                    f"{peaks[lib]:.1f} KB" for lib in ("hero", "pinax") if lib in peaks
                ),
                "",
                "",
            )
        )
    rows.append(
        (
            "peak RSS of the process (both libraries)",
            f"{summary['peak_rss_mb']:.1f} MB",
            "",
            "",
        )
    )
    return rows


def rebuild_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    ratio = summary["holdings_to_baseline"][-1]
    cpu = summary["holdings_to_baseline_cpu"][-1]
    size = summary["sizes"][-1]
    growth = summary["memory_growth_mb"]
    return [
        (
            f"holdings rebuild / baseline, events/s at {size:,} events",
            f"{ratio:.2f} (CPU time: {cpu:.2f})",
            ">= 0.5",
            verdict(ratio >= 0.5),
        ),
        (
            f"hero_rebuild holdings: peak RSS growth, {summary['sizes'][0]:,} to {size:,} events",
            f"{growth['holdings']:.1f} MB",
            "< 100 MB",
            verdict(growth["holdings"] < 100),
        ),
        (
            "hero_rebuild (all tables): peak RSS growth",
            f"{growth['all']:.1f} MB",
            "< 100 MB",
            verdict(growth["all"] < 100),
        ),
    ]


def audit_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    labels = {
        "history": "history()",
        "hero_audit": "hero_audit",
        "spread": "history(), users read once",
    }
    sizes = summary["sizes"]
    within = summary["flat_within"]
    rows = []
    for kind, label in labels.items():
        ratio = summary["ratio_largest_to_smallest"].get(kind)
        medians = summary["median_us"][kind]
        if ratio is None:
            continue
        first = next(m for m in medians if m is not None)
        rows.append(
            (
                f"audit, {label}: median per call at {sizes[-1]:,} / at the smallest size",
                f"{ratio:.2f} ({medians[-1]:,.0f} µs / {first:,.0f} µs)",
                f"1 ± {within:.2f}",
                verdict(abs(ratio - 1) <= within),
            )
        )
    peaks = summary["tracemalloc_peak_kb"]
    rows.append(
        (
            f"audit: peak Python memory of one call at {sizes[-1]:,} events, "
            "history() / hero_audit",
            f"{peaks['history'][-1]:.0f} KB / {peaks['hero_audit'][-1]:.0f} KB",
            "",
            "",
        )
    )
    rows.append(
        (
            "audit: peak RSS growth of the auditing process, by size",
            " / ".join(f"{value:.1f}" for value in summary["peak_rss_growth_mb"])
            + " MB",
            "",
            "",
        )
    )
    return rows


def concurrency_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    own = summary.get("own", {})
    for workers, figures in own.items():
        speedup = figures["speedup"]
        rows.append(
            (
                f"own users, {workers} worker(s): awards/s (speedup over 1)",
                f"{figures['awards_per_second']:,.0f}"
                + (f" ({speedup:.2f}x)" if speedup is not None else ""),
                "",
                "",
            )
        )
    for workers, figures in summary.get("shared", {}).items():
        rows.append(
            (
                f"shared users, {workers} workers: awards/s, retries, gave up",
                f"{figures['awards_per_second']:,.0f}, {figures['retries']:,}, "
                f"{figures['gave_up']:,}",
                "",
                "",
            )
        )
    peaks = [
        f["peak_rss_mb"]
        for scenario in ("own", "shared")
        for f in summary.get(scenario, {}).values()
    ]
    if peaks:
        rows.append(("peak RSS of a worker (largest)", f"{max(peaks):.1f} MB", "", ""))
    return rows


ROWS: dict[str, Callable[[dict[str, Any]], list[tuple[str, str, str, str]]]] = {
    "unlock-sqlite": unlock_rows,
    "unlock-postgres": unlock_rows,
    "rebuild": rebuild_rows,
    "audit": audit_rows,
    "concurrency": concurrency_rows,
}


def headline_rows(outcome: Outcome) -> list[tuple[str, str, str, str]]:
    summary = outcome.summary
    if outcome.status != 0 or summary is None:
        return [("run", f"FAILED (exit {outcome.status})", "", "")]
    rows = ROWS[outcome.benchmark.name](summary)
    checks = "passed" if summary.get("checks_passed") else "FAILED"
    return [*rows, ("correctness checks", checks, "", "")]


def summary_table(outcomes: Sequence[Outcome]) -> list[tuple[str, str, str, str, str]]:
    return [
        (outcome.benchmark.name, *row) for outcome in outcomes for row in outcome.rows
    ]


def print_summary(outcomes: Sequence[Outcome]) -> None:
    headers = ("benchmark", "figure", "value", "goal", "met?")
    rows = summary_table(outcomes)
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    print(line)
    print("-" * len(line))
    previous = None
    for row in rows:
        cells = ("" if row[0] == previous else row[0], *row[1:])
        previous = row[0]
        print(
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        )


# -- Markdown --------------------------------------------------------------


def machine_description() -> list[str]:
    import platform
    import sqlite3

    postgres = "unknown"
    try:
        import _postgres

        config = _postgres.database(_postgres.url(), "public")
        with _postgres.connect(config, "postgres") as connection:
            postgres = connection.execute("SHOW server_version").fetchone()[0]
    except Exception as error:  # no server: say so, the run still stands
        postgres = f"not reachable ({type(error).__name__})"
    return [
        f"nproc {usable_cpus()}, {cpu_model()}",
        f"Python {platform.python_version()}, Django {package_version('django')}, "
        f"eventsourcing {package_version('eventsourcing')}, SQLite "
        f"{sqlite3.sqlite_version}, PostgreSQL {postgres}, pinax-badges "
        f"{package_version('pinax-badges')}",
        f"hero at git {hero_revision()}",
    ]


def write_markdown(
    path: str, argv: Sequence[str], outcomes: Sequence[Outcome], started: str
) -> None:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    command = shlex.join([".venv/bin/python", "benchmarks/run_all.py", *argv])
    out = [
        "# Benchmark run",
        "",
        f"Started {started}; command, from the repository's root:",
        "",
        "```sh",
        command,
        "```",
        "",
        "Machine and versions:",
        "",
        *[f"* {line}" for line in machine_description()],
        "",
        "## Summary",
        "",
        "| benchmark | figure | value | goal | met? |",
        "|---|---|---|---|---|",
        *[
            "| " + " | ".join(cell(value) for value in row) + " |"
            for row in summary_table(outcomes)
        ],
    ]
    for outcome in outcomes:
        out += [
            "",
            f"## {outcome.benchmark.title}",
            "",
            f"`{shlex.join(outcome.command)}`: exit {outcome.status}, "
            f"{outcome.seconds:.0f} s",
            "",
            "```text",
            outcome.output.rstrip("\n"),
            "```",
        ]
    Path(path).write_text("\n".join(out) + "\n")


# -- main ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(arguments)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    clock = time.perf_counter()
    print(f"Benchmarks, {'quick' if options.quick else 'full'} run, started {started}")
    for line in machine_description():
        print(line)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="hero-bench-summaries-") as directory:
        for benchmark in BENCHMARKS:
            if benchmark.name in options.names:
                outcomes.append(run(benchmark, options.quick, directory))
    print(
        f"\n=== Summary ({'quick' if options.quick else 'full'} run, "
        f"{time.perf_counter() - clock:.0f} s; load average at the end "
        f"{load_average()})\n"
    )
    print_summary(outcomes)
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
