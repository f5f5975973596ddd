"""Concurrency benchmark: unlock throughput on PostgreSQL with 1, 2 and 4 workers.

Spawned workers call ``unlock()`` at once (the achievement of ``_points.py``),
each for users of its own, then all for the same users (hero's retry path);
throughput, retries, where the time goes and memory, and checks of what every
run wrote. ``README.md`` has the method.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import multiprocessing
import queue
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import _harness
from _harness import MB

SCENARIOS = {"own": "own users", "shared": "shared users"}
ACHIEVEMENT = "points"
#: The points of each worker's calls for each of its users, in this order: a
#: first award (level 1), then an upgrade (level 2).
CALLS = (10, 100)
BARRIER_TIMEOUT = 300.0
TOPICS = ("hero:UserAchievement.Unlocked", "hero:UserAchievement.LevelUpgraded")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _harness.Options(
        "Time concurrent unlock() calls on PostgreSQL with several worker processes.",
        repeat=(3, "runs of each scenario and worker count; the fastest is kept"),
    )
    parser.add("--workers", "1,2,4", "worker counts, comma-separated")
    text = "users per worker (own users) and in all (shared users), two calls each"
    parser.add("--users", 400, text)
    text = "skip the scenario in which the workers contend for the same users"
    parser.add("--no-shared", False, text)
    text = "the PostgreSQL schema of the run, created and dropped"
    parser.add("--schema", "hero_concurrency_bench", text)
    options = parser.parse(argv, "users", "repeat")
    try:
        options.worker_counts = sorted({int(n) for n in options.workers.split(",")})
    except ValueError:
        parser.error("--workers takes numbers separated by commas, e.g. 1,2,4")
    if min(options.worker_counts) < 1:
        parser.error("--workers must name at least one count, each at least 1")
    return options


class Instruments:
    """A worker's counters around hero's calls: attempts, lock+insert, write tx."""

    def __init__(self, ledger: Any) -> None:
        self.attempts = self.transactions = 0
        self.lock_and_insert = self.in_transaction = 0.0
        load, insert_events = ledger.user_achievement, ledger.recorder._insert_events
        owned_transaction = ledger.datastore.owned_transaction

        def counted_load(user_pk: str, achievement_id: str) -> Any:
            self.attempts += 1
            return load(user_pk, achievement_id)

        @contextlib.contextmanager
        def timed_transaction() -> Iterator[None]:
            started = time.perf_counter()
            try:
                with owned_transaction():
                    yield
            finally:
                self.in_transaction += time.perf_counter() - started
                self.transactions += 1

        def timed_insert(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return insert_events(*args, **kwargs)
            finally:
                self.lock_and_insert += time.perf_counter() - started

        ledger.user_achievement = counted_load
        ledger.datastore.owned_transaction = timed_transaction
        ledger.recorder._insert_events = timed_insert


def worker_main(
    number: int, database: dict[str, Any], names: list[str], sync: Any
) -> None:
    """Set up, warm up (on the last user named), wait for the others, then
    make the calls and report; ``sync``: the barrier and the results queue."""
    barrier, results = sync
    try:
        import _points

        _harness.setup_django(database, "concurrency")
        from hero.exceptions import UnlockConflict
        from hero.ledger import get_ledger

        call = _points.hero_call()
        *users, warmup = _harness.users_named(names)
        for points in CALLS:
            call(warmup, points)
        instruments = Instruments(get_ledger())
        gc.collect()
        memory = _harness.PeakRss()
        barrier.wait(timeout=BARRIER_TIMEOUT)
        started = time.monotonic()
        calls = awards = conflicts = 0
        for points in CALLS:
            for user in users:
                try:
                    awards += len(call(user, points))
                except UnlockConflict:
                    conflicts += 1
                calls += 1
        results.put(
            {
                **vars(instruments),
                "number": number,
                "calls": calls,
                "awards": awards,
                "conflicts": conflicts,
                "started": started,
                "finished": time.monotonic(),
                "rss_before": memory.before,
                "rss_peak": memory.peak(),
            }
        )
    except BaseException:
        barrier.abort()
        results.put({"number": number, "error": traceback.format_exc()})


def figures(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's figures from its workers' reports (``README.md`` says what
    each means)."""

    def total(key: str) -> Any:
        return sum(report[key] for report in reports)

    busy = [report["finished"] - report["started"] for report in reports]
    seconds = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    in_transaction = total("in_transaction") - total("lock_and_insert")
    transactions = max(1, total("transactions"))
    return {
        "calls": total("calls"),
        "awards": total("awards"),
        "seconds": seconds,
        "awards_per_second": total("awards") / seconds,
        "calls_per_second": total("calls") / seconds,
        "per_worker_awards_per_second": [
            report["awards"] / spent
            for report, spent in zip(reports, busy, strict=True)
        ],
        "retries": total("attempts") - total("calls"),
        "gave_up": total("conflicts"),
        "lock_and_insert_share": total("lock_and_insert") / sum(busy),
        "write_ms_less_lock_and_insert": 1000 * in_transaction / transactions,
        "peak_rss_mb": max(r["rss_peak"] for r in reports) / MB,
        "rss_growth_mb": max(r["rss_peak"] - r["rss_before"] for r in reports) / MB,
    }


def run_once(
    scenario: str,
    workers: int,
    run_number: int,
    users: int,
    database: dict[str, Any],
    report: _harness.Report,
) -> dict[str, Any]:
    """Start the workers together on fresh users; return the run's figures."""
    prefix = f"{scenario}{workers}-{run_number}"
    if scenario == "own":
        names = [
            [f"{prefix}-w{k}-{i:06d}" for i in range(users)] for k in range(workers)
        ]
        measured = [name for own in names for name in own]
    else:
        measured = [f"{prefix}-s-{i:06d}" for i in range(users)]
        names = [measured] * workers
    warmups = [f"{prefix}-warmup-{k}" for k in range(workers)]
    _harness.create_users([*measured, *warmups])
    before = _harness.stored_events()
    _harness.close_connections()

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers + 1)
    results = context.Queue()
    processes = [
        context.Process(
            target=worker_main,
            args=(k, database, [*names[k], warmups[k]], (barrier, results)),
            name=f"unlock-worker-{k}",
        )
        for k in range(workers)
    ]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    with contextlib.suppress(Exception):  # a worker that failed says why below
        barrier.wait(timeout=BARRIER_TIMEOUT)
    try:
        for _ in processes:
            reports.append(results.get(timeout=BARRIER_TIMEOUT * 2))
    except queue.Empty:
        reports.append({"number": -1, "error": "a worker did not report in time"})
    for process in processes:
        process.join(timeout=60)
        if process.is_alive():
            process.terminate()
            process.join()
    label = f"{SCENARIOS[scenario]}, {workers} worker(s)"
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise SystemExit(f"{label}: a worker failed:\n" + "\n".join(errors))
    run = figures(sorted(reports, key=lambda r: r["number"]))
    run["workers"] = workers
    problems, added = check(run, measured, before)
    if problems or run_number == 0:
        report.check(
            [f"{label}: {problem}" for problem in problems],
            f"{label}: {len(measured):,} users, {added:,} events added = "
            f"{run['awards']:,} awards reported + {workers * len(CALLS)} warm-up; one "
            "Unlocked and one LevelUpgraded per user, every holding at level 2, one "
            "ledger entry of each kind",
        )
    run["passed"] = not problems
    return run


def check(
    run: dict[str, Any], measured: Sequence[str], before: int
) -> tuple[list[str], int]:
    """What the run wrote, against what the workers were told."""
    from django.db.models import Count

    from hero.events import user_achievement_id
    from hero.models import AchievementUnlocked, LedgerEntry, StoredEvent

    users = _harness.users_named(measured)
    awards, warmups = run["awards"], run["workers"] * len(CALLS)
    added = _harness.stored_events() - before
    problems = []
    if awards != len(users) * len(CALLS):
        problems.append(
            f"the workers were told of {awards} awards, not {len(users) * 2}"
        )
    if added != awards + warmups:
        problems.append(
            f"{added} events added for {awards} awards and {warmups} warm-up"
        )

    def counted(rows: Any, key: str, **more: Any) -> dict[Any, Any]:
        """How many ``rows`` by ``key`` (and ``more`` aggregates: a tuple)."""
        found = rows.values_list(key).annotate(n=Count("pk"), **more)
        return {
            value: tuple(counts) if more else counts[0]
            for value, *counts in found.values_list(key, "n", *more)
        }

    originators = [user_achievement_id(str(user.pk), ACHIEVEMENT) for user in users]
    events = StoredEvent.objects.filter(originator_id__in=originators)
    topics = counted(events, "topic", aggregates=Count("originator_id", distinct=True))
    once_each = (len(users), len(users))
    if topics != dict.fromkeys(TOPICS, once_each):
        problems.append(
            f"events of the run's users by topic (events, aggregates): {topics}; "
            f"wanted {once_each} for each of Unlocked and LevelUpgraded"
        )
    holdings = AchievementUnlocked.objects.filter(achievement_id=ACHIEVEMENT)
    holdings = counted(holdings.filter(user__in=users), "level")
    if holdings != {2: len(users)}:
        problems.append(f"holdings by level {holdings}, wanted {{2: {len(users)}}}")
    ledger = counted(LedgerEntry.objects.filter(user__in=users), "kind")
    if ledger != {"unlocked": len(users), "upgraded": len(users)}:
        problems.append(f"ledger entries by kind {ledger}")
    return problems, added


#: The columns of the tables: header, figure, format (a list: its mean and range).
COLUMNS = (
    ("workers", "workers", "{}"),
    ("calls", "calls", "{:,}"),
    ("awards", "awards", "{:,}"),
    ("seconds", "seconds", "{:.2f}"),
    ("awards/s", "awards_per_second", "{:,.0f}"),
    ("calls/s", "calls_per_second", "{:,.0f}"),
    ("per worker awards/s", "per_worker_awards_per_second", "{:,.0f}"),
    ("speedup", "speedup", "{:.2f}"),
    ("retries", "retries", "{:,}"),
    ("gave up", "gave_up", "{:,}"),
    ("lock+insert", "lock_and_insert_share", "{:.0%}"),
    ("write tx", "write_ms_less_lock_and_insert", "{:.2f} ms"),
    ("peak RSS/worker", "peak_rss_mb", "{:.1f} MB"),
    ("RSS growth/worker", "rss_growth_mb", "{:.1f} MB"),
)
#: Each scenario's table: its title, and the columns it leaves out.
TABLES = {
    "own": (
        "Own users: every call writes (a first award, then an upgrade); "
        "{users} users per worker",
        {"calls", "calls/s"},
    ),
    "shared": (
        "Shared users: every worker makes the same calls for the same "
        "{users} users; one wins each award",
        {"per worker awards/s", "speedup", "RSS growth/worker"},
    ),
}


def report_runs(
    best: dict[str, dict[int, Any]], users: int, report: _harness.Report
) -> None:
    """The fastest runs' tables, the headline figures and the JSON."""
    report.figures["users"] = users
    for scenario, runs in best.items():  # by worker count, in order
        base = runs.get(1)
        for run in runs.values():
            run["speedup"] = (
                base and run["awards_per_second"] / base["awards_per_second"]
            )
        title, left_out = TABLES[scenario]
        print(title.format(users=users))
        columns = [column for column in COLUMNS if column[0] not in left_out]
        rows = [
            [_harness.cell(run[key], form) for _, key, form in columns]
            for run in runs.values()
        ]
        _harness.print_table([header for header, _, _ in columns], rows)
        print()
        report.figures[scenario] = {str(workers): run for workers, run in runs.items()}
        for workers, run in runs.items():
            rate = f"{run['awards_per_second']:,.0f}"
            if scenario == "own":
                speedup = "" if base is None else f" ({run['speedup']:.2f}x)"
                label = f"own users, {workers} worker(s): awards/s (speedup over 1)"
                report.figure(label, rate + speedup)
            else:
                label = f"shared users, {workers} workers: awards/s, retries, gave up"
                report.figure(label, f"{rate}, {run['retries']:,}, {run['gave_up']:,}")
    print(
        "awards/s: all workers' awards / seconds from the first start to the last\n"
        "end (best run); per worker: its awards / its own seconds, mean (min-max);\n"
        "speedup: against one worker. retries: aggregate loads beyond one per call\n"
        "(lost races); gave up: UnlockConflict. lock+insert: the workers' share of\n"
        "time in _insert_events (the wait for LOCK TABLE and the INSERT, sent\n"
        "together). write tx: a write transaction less that (encoding the event,\n"
        "then, under the lock, the read tables' writes and the COMMIT). peak RSS,\n"
        "RSS growth: the largest worker's VmHWM, and rise above its RSS before."
    )
    largest = max(run["peak_rss_mb"] for runs in best.values() for run in runs.values())
    report.figure("peak RSS of a worker (largest)", f"{largest:.1f} MB")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    counts, repeat = options.worker_counts, options.repeat
    report = _harness.Report("concurrency")
    with _harness.run_database(
        "postgres", "concurrency", schema=options.schema
    ) as database:
        _harness.setup_django(database, "concurrency", migrate=True)
        _harness.print_header(
            f"--workers {','.join(map(str, counts))}, --users {options.users}, "
            f"--repeat {repeat}; {len(CALLS)} calls per "
            "user (points=10: first award, points=100: upgrade), inline projections"
        )
        best: dict[str, dict[int, Any]] = {}
        kinds = [(scenario, workers) for scenario in SCENARIOS for workers in counts]
        for run_number, (scenario, workers) in itertools.product(range(repeat), kinds):
            if scenario == "shared" and (workers < 2 or options.no_shared):
                continue
            run = run_once(
                scenario, workers, run_number, options.users, database, report
            )
            print(
                f"  run {run_number + 1}, {SCENARIOS[scenario]}, {workers} worker(s): "
                f"{run['awards']:,} awards in {run['seconds']:.2f} s = "
                f"{run['awards_per_second']:,.0f} awards/s, {run['retries']:,} retries"
                f"{'' if run['passed'] else ' -- CHECK FAILED'}",
                flush=True,
            )
            kept = best.setdefault(scenario, {}).setdefault(workers, run)
            best[scenario][workers] = max(
                kept, run, key=lambda r: r["awards_per_second"]
            )
        print()
        report_runs(best, options.users, report)
        if not report.failed:
            report.checked.append(f"the same in each of the {repeat} runs of each")
        return report.finish(options.summary)


if __name__ == "__main__":
    sys.exit(main())
