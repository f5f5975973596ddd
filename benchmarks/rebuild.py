"""Rebuild benchmark: ``hero_rebuild`` against a plain-sqlite3 (or psycopg) baseline.

At a tenth and at all of a store of ``--events`` events (``_store.py``), times
``hero_rebuild`` with its default options and the baseline
(``_rebuild_baseline.py``: the same events read and decoded, the same tables
written) in fresh child processes, with their memory, then checks the tables.
``README.md`` has the method and the goals::

    .venv/bin/python benchmarks/rebuild.py [--database postgres] [--events 1000000]
        [--batch-size 1000] [--repeat 1] [--tracemalloc] [--keep DIR] [--summary FILE]
    .venv/bin/python -m cProfile -s cumtime benchmarks/rebuild.py \\
        --measure-rebuild DIR/rebuild.sqlite3 --what all   # after --keep DIR
"""

from __future__ import annotations

import argparse
import functools
import gc
import io
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import _harness
import _rebuild_baseline
import _store
from _harness import MB, mb

KINDS = ("all", "baseline")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _harness.Options(
        "Time hero_rebuild against a plain-sqlite3 or psycopg baseline.",
        repeat=(1, "runs of each rebuild; the best is kept"),
        store=("rebuild", 100),
    )
    text = "the baseline's chunk (hero_rebuild runs with its defaults)"
    parser.add("--batch-size", 1000, text)
    parser.add("--database", "sqlite", "the database", choices=("sqlite", "postgres"))
    text = "also measure hero's rebuilds' peak Python allocations (untimed runs)"
    parser.add("--tracemalloc", False, text)
    text = (
        "build the store with personal fields left plain (sealing off), to compare "
        "with a run without it: what sealing costs the rebuild"
    )
    parser.add("--unsealed", False, text)
    # One measurement in this process (what the parent runs as a child).
    parser.add_argument("--what", choices=KINDS, default="all", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    return parser.parse(argv, "batch_size", "repeat")


def hero_rebuild(target: str) -> Callable[[], int]:
    """Django on the store; one ``hero_rebuild`` call, with its default options,
    returning the events read."""
    _store.configure_django(target, "rebuild")
    from django.core.management import call_command
    from django.db import connection

    from hero.management.commands import hero_rebuild  # noqa: F401  (import now)

    connection.ensure_connection()

    def call() -> int:
        out = io.StringIO()
        call_command("hero_rebuild", stdout=out)
        found = re.search(r"(\d+) events in", out.getvalue())
        if found is None:
            raise SystemExit(f"unexpected output of hero_rebuild: {out.getvalue()!r}")
        return int(found.group(1))

    return call


def measure_one(path: str, what: str, batch_size: int, trace: bool) -> dict[str, Any]:
    """Run one rebuild in this process (the child): time, CPU and memory."""
    if what == "baseline":
        call = functools.partial(_rebuild_baseline.rebuild, path, batch_size)
    else:
        call = hero_rebuild(path)
    if trace:
        return {"traced_peak": _harness.traced_peak(call)}
    gc.collect()
    heap = _harness.status("RssAnon") or 0
    memory = _harness.PeakRss()
    cpu_before = time.process_time()  # user + system
    started = time.perf_counter()
    events = call()
    return {
        "events": events,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_before,
        "peak_growth": memory.growth(),
        # Private memory (Python's heap and SQLite's page cache) at the end.
        "heap_growth": (_harness.status("RssAnon") or 0) - heap,
    }


@dataclass
class SizeResult:
    """One size's rebuilds: best time and CPU, largest memory, traced peaks."""

    events: int
    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    growth: dict[str, int] = field(default_factory=dict)
    traced: dict[str, int] = field(default_factory=dict)

    def rate(self, what: str) -> float:
        """Events per second of wall-clock time, best run."""
        return self.events / self.wall[what]

    def cpu_rate(self, what: str) -> float:
        """Events per CPU second, best run: less disturbed by other work."""
        return self.events / self.cpu[what]

    def ratio(self, what: str = "all", cpu: bool = False) -> float:
        """A rebuild's rate against the baseline's."""
        rate = self.cpu_rate if cpu else self.rate
        return rate(what) / rate("baseline")


def measure_size(
    path: str, events: int, options: argparse.Namespace, report: _harness.Report
) -> SizeResult:
    """Each rebuild ``--repeat`` times in a child process, then the tables."""
    _store.settle(path)
    result = SizeResult(events)
    arguments = ("--measure-rebuild", path, "--batch-size", str(options.batch_size))
    for round_number in range(options.repeat):
        for what in KINDS:
            run = _harness.run_child(__file__, *arguments, "--what", what)
            if run["events"] != events:
                raise SystemExit(f"{what} read {run['events']} events, not {events}")
            result.wall[what] = min(run["seconds"], result.wall.get(what, math.inf))
            result.cpu[what] = min(run["cpu_seconds"], result.cpu.get(what, math.inf))
            result.growth[what] = max(run["peak_growth"], result.growth.get(what, 0))
            print(
                f"  {events:>9,} events  {what:<8}  round {round_number + 1}: "
                f"{run['seconds']:7.2f} s ({run['cpu_seconds']:6.2f} s CPU)  "
                f"{events / run['seconds']:>9,.0f} events/s  "
                f"peak RSS +{run['peak_growth'] / MB:.1f} MB "
                f"(heap +{run['heap_growth'] / MB:.1f} MB at the end)",
                flush=True,
            )
    for what in ("all",) if options.tracemalloc else ():
        traced = _harness.run_child(__file__, *arguments, "--what", what, "--trace")
        result.traced[what] = int(traced["traced_peak"])
        print(
            f"  {events:>9,} events  {what:<8}  under tracemalloc: peak "
            f"{traced['traced_peak'] / MB:.1f} MB of Python allocations",
            flush=True,
        )
    check_tables(path, events, report)
    return result


def check_tables(target: str, events: int, report: _harness.Report) -> None:
    """hero's rebuilt tables against the store and against the baseline's."""
    from django.db import connection

    with connection.cursor() as cursor:
        figures = []
        for sql in (
            "SELECT COUNT(*) FROM hero_achievement_unlocked",
            "SELECT COALESCE(SUM(holders), 0) FROM hero_achievement_count",
            "SELECT COUNT(*) FROM hero_ledger_entry",
        ):
            cursor.execute(sql)
            figures.append(int(cursor.fetchone()[0]))
    holders, counted, ledger = figures
    _harness.close_connections()
    expected = events // _store.EVENTS_PER_USER * len(_store.ACHIEVEMENT_IDS)
    problems = []
    if not holders == counted == expected:
        problems.append(f"holdings {holders}, counts {counted}, expected {expected}")
    if ledger != events:
        problems.append(f"ledger has {ledger} entries, the store {events} events")
    for table, (missing, extra) in _rebuild_baseline.differences(target).items():
        if missing or extra:
            problems.append(
                f"{table}: {missing} rows not in the baseline, {extra} extra"
            )
    report.check(
        [f"at {events:,} events: {problem}" for problem in problems],
        f"{events:,} events: {holders:,} holdings rows = sum of counts, {ledger:,} "
        "ledger entries; every table identical to the baseline's (datetimes included)",
    )


def print_results(results: Sequence[SizeResult]) -> None:
    headers = ["events", "hero_rebuild ev/s", "baseline ev/s", "hero/baseline"]
    headers += ["same, CPU time", "peak hero", "peak baseline"]
    rows = [
        [
            f"{r.events:,}",
            *(f"{r.rate(what):,.0f}" for what in KINDS),
            f"{r.ratio():.2f}",
            f"{r.ratio(cpu=True):.2f}",
            *(mb(r.growth[what]) for what in KINDS),
        ]
        for r in results
    ]
    small, large = results[0], results[-1]
    growth = [mb(large.growth[what] - small.growth[what]) for what in KINDS]
    rows.append(["growth", "", "", "", "", *growth])
    _harness.print_table(headers, rows)
    print(
        "\nev/s: events in the store / wall-clock seconds of the call (best run); same,\n"
        "CPU time: the ratio of events per CPU second (user + system) instead, less\n"
        "disturbed by other work. peak: the process's peak RSS above its RSS before.\n"
        "hero_rebuild: every projection (holdings, counts, ledger), default options;\n"
        "the baseline writes the same rows into copies of those tables."
    )


def headline(
    results: Sequence[SizeResult], database: str, report: _harness.Report
) -> None:
    """The goals (speed against the baseline, flat memory) and the JSON."""
    small, large = results[0], results[-1]
    growth = {what: large.growth[what] - small.growth[what] for what in KINDS}
    report.figures.update(
        database=database,
        sizes=[r.events for r in results],
        rate={what: [r.rate(what) for r in results] for what in KINDS},
        hero_to_baseline=[r.ratio() for r in results],
        hero_to_baseline_cpu=[r.ratio(cpu=True) for r in results],
        peak_growth_mb={what: [r.growth[what] / MB for r in results] for what in KINDS},
        memory_growth_mb={what: growth[what] / MB for what in KINDS},
    )
    baseline = "plain psycopg" if database == "postgres" else "plain sqlite3"
    for result in results:
        report.figure(
            f"hero_rebuild / {baseline}, events/s at {result.events:,} events",
            f"{result.ratio():.2f} (CPU time: {result.ratio(cpu=True):.2f})",
            ">= 0.5",
            result.ratio() >= 0.5,
        )
    span = f"{small.events:,} to {large.events:,} events"
    report.figure(
        f"hero_rebuild: peak RSS growth, {span}",
        mb(growth["all"]),
        "< 100 MB",
        growth["all"] < 100 * MB,
    )
    if "all" in large.traced:  # --tracemalloc: extra, untimed runs
        peaks = " / ".join(mb(r.traced["all"]) for r in results)
        growth_traced = mb(large.traced["all"] - small.traced["all"])
        label = "hero_rebuild: tracemalloc peak (Python allocations) by size"
        report.figure(label, f"{peaks}; growth {growth_traced}")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.measure_rebuild:
        return _harness.report_to_parent(
            measure_one(
                options.measure_rebuild, options.what, options.batch_size, options.trace
            )
        )
    report = _harness.Report("rebuild")
    kind = options.database
    with _harness.run_database(kind, "rebuild", keep=options.keep) as database:
        target = database["NAME"] if kind == "sqlite" else "postgres:hero_rebuild_bench"
        _store.configure_django(target, "rebuild", migrate=True)
        _rebuild_baseline.create_tables(target)
        _harness.print_header(
            f"--events {options.events:,}, --batch-size {options.batch_size}, "
            f"--repeat {options.repeat}"
            + (", personal fields unsealed" if options.unsealed else "")
        )
        results = []
        for size in (options.events // 10, options.events):
            _store.grow(size, sealed=not options.unsealed)
            results.append(measure_size(target, size, options, report))
        print()
        print_results(results)
        headline(results, kind, report)
        return report.finish(options.summary)


if __name__ == "__main__":
    sys.exit(main())
