"""Rebuild benchmark: ``hero_rebuild`` against a plain-sqlite3 baseline, on SQLite.

What it measures, in one run on one SQLite file database:

1. Builds an event store of ``--events`` events (default 1,000,000): one user per
   10 events, each unlocking four achievements and upgraded 0, 1, 2 and 3 times
   in them (``_rebuild_achievements.py``). Users are bulk-created; events come
   from hero's own ``UserAchievement`` aggregates (``start()`` then ``award()``
   with rising levels: ``Unlocked`` then ``LevelUpgraded`` events) and are saved
   1,000 users at a time with ``get_ledger().record()`` in ``transaction.atomic()``.
   ``HERO_PROJECTIONS = "async"``, so no read table is written while building
   (``_store.py``, which the audit benchmark shares). The number of rows in ``hero_stored_event`` is checked against the target.

2. At a tenth of the events first (100,000 by default), then again after the
   store is extended to all of them, times three rebuilds of the current
   holdings, each in a fresh child process
   (``rebuild.py --measure-rebuild DBFILE --what ...``):

   ``holdings``  ``call_command("hero_rebuild", "holdings")``: the
                 ``hero_achievement_unlocked`` rows (and ``hero_achievement_count``)
   ``all``       ``call_command("hero_rebuild")``: holdings, counts and the
                 ledger (one ``hero_ledger_entry`` row per event)
   ``baseline``  plain ``sqlite3``, no Django (``_rebuild_baseline.py``): read
                 the events in order of id, in chunks of ``--batch-size``,
                 ``json.loads`` each state, fold the chunk into current-state rows
                 and upsert them with ``executemany`` into ``baseline_unlocked``, a
                 copy of ``hero_achievement_unlocked``'s schema; one transaction
                 per chunk. The practical limit of this work in Python.

   A rebuild's rate is events in the store / wall-clock seconds of the call
   (``time.perf_counter``). The goal compares ``holdings`` with ``baseline``,
   which produce the same rows (checked after each size: the two tables must be
   equal, datetimes included).

3. Memory: each child resets the kernel's peak-RSS mark (``/proc/self/clear_refs``)
   just before its rebuild and reports its peak RSS (``VmHWM``) minus its RSS
   just before; the growth is that figure at the full size minus at a tenth.
   With ``--tracemalloc`` each size also gets one more ``holdings`` and ``all``
   run under ``tracemalloc`` (slower; not timed), reporting the peak of Python
   allocations.

Before each size's runs the events table is read once, so every run starts with
the database file in the OS page cache.

Run it from the repository's root::

    .venv/bin/python benchmarks/rebuild.py [--events 1000000] [--batch-size 1000]
        [--repeat 1] [--tracemalloc] [--keep DIR] [--summary FILE.json]

``--events`` must be a multiple of 100 (the first size is a tenth of it);
``--repeat K`` keeps each rebuild's best of K runs; ``--keep DIR`` builds the
database in DIR and leaves it there, e.g. to profile one rebuild on it::

    .venv/bin/python -m cProfile -s cumtime benchmarks/rebuild.py \\
        --measure-rebuild DIR/rebuild.sqlite3 --what holdings
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import re
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for directory in (ROOT, HERE):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

import _store  # noqa: E402
from _machine import (  # noqa: E402
    MB,
    cpu_model,
    hero_revision,
    load_average,
    mb,
    package_version,
    peak_rss,
    reset_peak_rss,
    status,
)

DB_NAME = "rebuild.sqlite3"
KINDS = ("holdings", "all", "baseline")
RESULT_MARK = "REBUILD-RESULT "
RSS_PARTS = ("RssAnon", "RssFile", "RssShmem")


# -- options ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time hero_rebuild against a plain-sqlite3 baseline on SQLite.",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=1_000_000,
        help="events in the store at the full size (default 1000000; a multiple of 100)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="hero_rebuild's --batch-size, and the baseline's chunk (default 1000)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each rebuild; the best is kept"
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also measure hero's rebuilds' peak Python allocations (extra, untimed runs)",
    )
    parser.add_argument(
        "--summary",
        metavar="FILE",
        help="also write the headline figures as JSON to FILE (for run_all.py)",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help=f"build the database as DIR/{DB_NAME} and keep it (default: a temporary "
        "directory, removed at the end)",
    )
    # One measurement in this process (what the parent runs as a child).
    parser.add_argument("--measure-rebuild", metavar="DBFILE", help=argparse.SUPPRESS)
    parser.add_argument(
        "--what", choices=KINDS, default="holdings", help=argparse.SUPPRESS
    )
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.measure_rebuild is None and (
        options.events < 100 or options.events % 100
    ):
        parser.error("--events must be a positive multiple of 100")
    if options.batch_size < 1 or options.repeat < 1:
        parser.error("--batch-size and --repeat must be at least 1")
    return options


# -- Django ----------------------------------------------------------------


def configure_django(path: str) -> None:
    _store.configure_django(path, "rebuild-benchmark")


# -- one measurement (child process) ---------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_one(path: str, what: str, batch_size: int, trace: bool) -> dict[str, Any]:
    """Run one rebuild in this process; return its events, seconds and memory."""
    import tracemalloc

    import _rebuild_baseline

    call: Any
    if what == "baseline":

        def call() -> int:
            return _rebuild_baseline.rebuild(path, batch_size)

    else:
        configure_django(path)
        from django.core.management import call_command
        from django.db import connection

        from hero.management.commands import hero_rebuild  # noqa: F401  (import now)

        connection.ensure_connection()
        names = ["holdings"] if what == "holdings" else []

        def call() -> int:
            out = io.StringIO()
            call_command("hero_rebuild", *names, batch_size=batch_size, stdout=out)
            found = re.search(r"(\d+) events in", out.getvalue())
            if found is None:
                raise SystemExit(
                    f"unexpected output of hero_rebuild: {out.getvalue()!r}"
                )
            return int(found.group(1))

    gc.collect()
    before = {name: status(name) for name in RSS_PARTS}
    rss_before = (
        status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    reset = reset_peak_rss()
    if trace:
        tracemalloc.start()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    events = call()
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_before
    traced_peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    return {
        "what": what,
        "events": events,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rss_before": rss_before,
        "rss_peak": peak_rss(reset),
        "peak_is_reset": reset,
        "traced_peak": traced_peak,
        # What the RSS grew by, as of the end of the rebuild: private memory
        # (the heap: Python's and SQLite's page cache) and mapped files (among
        # them SQLite's WAL index, the -shm file).
        "rss_parts": _rss_growth(before),
    }


def _rss_growth(before: dict[str, int | None]) -> dict[str, int]:
    growth = {}
    for name, earlier in before.items():
        later = status(name)
        if earlier is not None and later is not None:
            growth[name] = later - earlier
    return growth


def run_child(
    path: str, what: str, batch_size: int, *, trace: bool = False
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure-rebuild",
        path,
        "--what",
        what,
        "--batch-size",
        str(batch_size),
    ]
    if trace:
        command.append("--trace")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    raise SystemExit(
        f"the {what} rebuild failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
    )


# -- measuring one size ----------------------------------------------------


@dataclass
class SizeResult:
    events: int
    best: dict[str, dict[str, Any]] = field(default_factory=dict)
    least_cpu: dict[str, float] = field(default_factory=dict)
    traced: dict[str, int] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def rate(self, what: str) -> float:
        """Events per second of wall-clock time, best run."""
        run = self.best[what]
        return float(run["events"]) / float(run["seconds"])

    def cpu_rate(self, what: str) -> float:
        """Events per second of the process's CPU time (user + system), best run:
        less disturbed than wall-clock time by other work on a shared machine."""
        return self.events / self.least_cpu[what]

    def peak_growth(self, what: str) -> int:
        """Peak RSS above the RSS before the rebuild, over its runs (the largest)."""
        return int(self.best[what]["peak_growth"])


def measure_size(path: str, events: int, options: argparse.Namespace) -> SizeResult:
    _store.settle(path)
    result = SizeResult(events)
    for round_number in range(options.repeat):
        for what in KINDS:
            run = run_child(path, what, options.batch_size)
            if run["events"] != events:
                raise SystemExit(f"{what} read {run['events']} events, not {events}")
            growth = run["rss_peak"] - run["rss_before"]
            result.least_cpu[what] = min(
                run["cpu_seconds"], result.least_cpu.get(what, run["cpu_seconds"])
            )
            best = result.best.get(what)
            if best is None or run["seconds"] < best["seconds"]:
                run["peak_growth"] = max(growth, best["peak_growth"] if best else 0)
                result.best[what] = run
            else:
                best["peak_growth"] = max(best["peak_growth"], growth)
            print(
                f"  {events:>9,} events  {what:<8}  round {round_number + 1}: "
                f"{run['seconds']:7.2f} s ({run['cpu_seconds']:6.2f} s CPU)  "
                f"{run['events'] / run['seconds']:>9,.0f} events/s  "
                f"peak RSS +{growth / MB:.1f} MB "
                f"(heap +{run['rss_parts'].get('RssAnon', 0) / MB:.1f} MB at the end)",
                flush=True,
            )
    if options.tracemalloc:
        for what in ("holdings", "all"):
            run = run_child(path, what, options.batch_size, trace=True)
            result.traced[what] = int(run["traced_peak"])
            print(
                f"  {events:>9,} events  {what:<8}  under tracemalloc: peak "
                f"{run['traced_peak'] / MB:.1f} MB of Python allocations",
                flush=True,
            )
    result.checks.extend(check_tables(path, events))
    return result


def check_tables(path: str, events: int) -> list[str]:
    """The rebuilt tables against the store and against each other."""
    import _rebuild_baseline
    from _rebuild_achievements import ACHIEVEMENT_IDS, EVENTS_PER_USER

    connection = sqlite3.connect(path)
    try:

        def one(sql: str) -> int:
            return int(connection.execute(sql).fetchone()[0])

        holders = one("SELECT COUNT(*) FROM hero_achievement_unlocked")
        baseline = one(f"SELECT COUNT(*) FROM {_rebuild_baseline.TABLE}")
        counted = one("SELECT COALESCE(SUM(holders), 0) FROM hero_achievement_count")
        ledger = one("SELECT COUNT(*) FROM hero_ledger_entry")
    finally:
        connection.close()
    expected = events // EVENTS_PER_USER * len(ACHIEVEMENT_IDS)
    missing, extra = _rebuild_baseline.differences(path)
    problems = []
    if not holders == baseline == counted == expected:
        problems.append(
            f"rows: holdings {holders}, baseline {baseline}, counts {counted}, "
            f"expected {expected}"
        )
    if missing or extra:
        problems.append(
            f"baseline differs from holdings: {missing} missing, {extra} extra rows"
        )
    if ledger != events:
        problems.append(f"ledger has {ledger} entries, the store {events} events")
    if problems:
        raise SystemExit(f"CHECK FAILED at {events} events: {'; '.join(problems)}")
    return [
        f"{events:,} events: {holders:,} holdings rows = baseline rows (identical, "
        f"datetimes included) = sum of counts; {ledger:,} ledger entries"
    ]


# -- reporting -------------------------------------------------------------


def print_header(path: str, options: argparse.Namespace) -> None:
    import django

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(
        f"Machine: nproc {usable} (cpu_count {os.cpu_count()}), {cpu_model()}, "
        f"load average {load_average()}"
    )
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"Django {django.get_version()}, eventsourcing {package_version('eventsourcing')}, "
        f"hero git {hero_revision()}"
    )
    print(
        f"Database: {path} (journal_mode=WAL, synchronous=NORMAL); "
        f"--events {options.events:,}, --batch-size {options.batch_size}, "
        f"--repeat {options.repeat}"
    )
    print()


def print_table(results: Sequence[SizeResult], traced: bool) -> None:
    headers = (
        "events",
        "hero holdings ev/s",
        "hero full ev/s",
        "baseline ev/s",
        "holdings/baseline",
        "same, CPU time",
        "peak holdings",
        "peak full",
        "peak baseline",
    )
    rows = [
        (
            f"{r.events:,}",
            f"{r.rate('holdings'):,.0f}",
            f"{r.rate('all'):,.0f}",
            f"{r.rate('baseline'):,.0f}",
            f"{r.rate('holdings') / r.rate('baseline'):.2f}",
            f"{r.cpu_rate('holdings') / r.cpu_rate('baseline'):.2f}",
            mb(r.peak_growth("holdings")),
            mb(r.peak_growth("all")),
            mb(r.peak_growth("baseline")),
        )
        for r in results
    ]
    small, large = results[0], results[-1]
    rows.append(
        (
            "growth",
            "",
            "",
            "",
            "",
            "",
            mb(large.peak_growth("holdings") - small.peak_growth("holdings")),
            mb(large.peak_growth("all") - small.peak_growth("all")),
            mb(large.peak_growth("baseline") - small.peak_growth("baseline")),
        )
    )
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print(
        "\nev/s: events in the store / wall-clock seconds of the whole call (best run).\n"
        "same, CPU time: the ratio of events per CPU second (user + system) of the\n"
        "two processes instead, which other work on the machine disturbs less.\n"
        "peak: peak RSS of the rebuild's process above its RSS just before the rebuild.\n"
        "holdings = hero_rebuild holdings (the same rows as the baseline);\n"
        "full = hero_rebuild (holdings, counts, ledger)."
    )
    if traced:
        print(
            "\ntracemalloc peak (Python allocations during the rebuild, untimed runs):"
        )
        for what, label in (
            ("holdings", "hero_rebuild holdings"),
            ("all", "hero_rebuild"),
        ):
            figures = ", ".join(
                f"{r.events:,} events {mb(r.traced[what])}" for r in results
            )
            growth = large.traced[what] - small.traced[what]
            print(f"  {label}: {figures}; growth {mb(growth)}")


def print_goals(results: Sequence[SizeResult]) -> None:
    small, large = results[0], results[-1]
    ratio = large.rate("holdings") / large.rate("baseline")
    print(
        f"\nGoal 1, at {large.events:,} events: hero_rebuild holdings at "
        f"{ratio:.2f}x the baseline's events/s (goal >= 0.5): "
        f"{'met' if ratio >= 0.5 else 'NOT met'}"
        f"\n  [on CPU time: {large.cpu_rate('holdings') / large.cpu_rate('baseline'):.2f}x; "
        f"the full rebuild: {large.rate('all') / large.rate('baseline'):.2f}x]"
    )
    for what, label in (("holdings", "hero_rebuild holdings"), ("all", "hero_rebuild")):
        growth = large.peak_growth(what) - small.peak_growth(what)
        print(
            f"Goal 2, {label}: peak memory growth from {small.events:,} to "
            f"{large.events:,} events {mb(growth)} (goal < 100 MB): "
            f"{'met' if growth < 100 * MB else 'NOT met'}"
        )


def write_summary(path: str, results: Sequence[SizeResult]) -> None:
    small, large = results[0], results[-1]
    summary = {
        "benchmark": "rebuild",
        "sizes": [r.events for r in results],
        "rate": {
            what: [r.rate(what) for r in results]
            for what in ("holdings", "all", "baseline")
        },
        "holdings_to_baseline": [
            r.rate("holdings") / r.rate("baseline") for r in results
        ],
        "holdings_to_baseline_cpu": [
            r.cpu_rate("holdings") / r.cpu_rate("baseline") for r in results
        ],
        "peak_growth_mb": {
            what: [r.peak_growth(what) / MB for r in results] for what in KINDS
        },
        "memory_growth_mb": {
            what: (large.peak_growth(what) - small.peak_growth(what)) / MB
            for what in KINDS
        },
        # check_tables() stops the run when a check fails.
        "checks_passed": True,
    }
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")


# -- main ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.measure_rebuild:
        result = measure_one(
            options.measure_rebuild, options.what, options.batch_size, options.trace
        )
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0

    started = time.perf_counter()
    with _store.database_directory(
        options.keep, DB_NAME, "hero-rebuild-bench-"
    ) as path:
        configure_django(path)
        import _rebuild_baseline
        from _rebuild_achievements import EVENTS_PER_USER
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        _rebuild_baseline.create_table(path)
        print_header(path, options)
        results: list[SizeResult] = []
        users = 0
        for size in (options.events // 10, options.events):
            new_users = size // EVENTS_PER_USER - users
            print(f"Building: {new_users:,} more users and their events", flush=True)
            written, seconds = _store.build_store(users, new_users)
            users += new_users
            count = _store.stored_events()
            if count != size:
                raise SystemExit(f"the store has {count} events, not {size}")
            print(
                f"  hero_stored_event has {count:,} rows ({written:,} written in "
                f"{seconds:.1f} s, {written / seconds:,.0f} events/s)",
                flush=True,
            )
            results.append(measure_size(path, size, options))
        print()
        print_table(results, options.tracemalloc)
        print_goals(results)
        if options.summary:
            write_summary(options.summary, results)
        print()
        for size_result in results:
            for line in size_result.checks:
                print(f"Checked: {line}")
        print(
            f"\nWhole run {time.perf_counter() - started:.0f} s; "
            f"load average at the end {load_average()}"
        )
        if options.keep:
            print(f"Database kept: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
