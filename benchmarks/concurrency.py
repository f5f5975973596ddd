"""Concurrency benchmark: unlock throughput on PostgreSQL with 1, 2 and 4 workers.

Worker processes (``multiprocessing``, spawned: each a fresh interpreter with
its own Django and its own database connection) call
``hero.achievements.unlock()`` at the same time, on the points achievement of
the unlock benchmark (``_points.py``, ``_hero_points.py``), with inline
projections (the default): every award writes the event and the read tables in
one transaction.

Two scenarios, each run with every worker count of ``--workers`` (default
1, 2, 4):

``own users``     each worker has ``--users`` users of its own and calls
                  ``unlock(points=10)`` for each of them (a first award), then
                  ``unlock(points=100)`` for each (an upgrade): 2 x ``--users``
                  calls per worker, every one of which writes. Nothing is
                  contended but the database itself.
``shared users``  every worker goes through the same ``--users`` users, in the
                  same order, with the same calls: for each (user, call) one
                  worker wins and writes; the others lose the race on the
                  aggregate's version (the store refuses a second event at the
                  same version), retry, find the level held and return []. This
                  exercises hero's retry path; it runs with 2 workers or more.

How it measures:

* Each worker sets Django up, looks its users up and makes one warm-up award
  and upgrade for a user of its own, then waits at a barrier with the others;
  all start together. Each reports its own start and end (``time.monotonic``,
  the same clock in every process), its calls and the awards they returned.
* Throughput: awards returned by all workers / wall-clock seconds from the
  first start to the last end; per worker: its awards / its own seconds.
  Speedup: the total against the same scenario's figure with one worker. Each
  (scenario, worker count) runs ``--repeat`` times with fresh users; the run
  with the highest throughput is kept.
* Retries: each worker counts how often hero loads a (user, achievement)
  aggregate to decide (``Ledger.user_achievement``, wrapped in the worker; one
  load per attempt); attempts beyond one per call are retries after a lost
  race. ``UnlockConflict`` (hero gave up after ``HERO_UNLOCK_ATTEMPTS``) is
  counted, not raised.
* Where the time goes: each worker also times the recorder's
  ``_insert_events`` (wrapped on its ledger's recorder) and hero's write
  transactions (the datastore's ``owned_transaction``, wrapped). hero sends
  ``LOCK TABLE`` and the event's INSERT together, in one psycopg pipeline, so
  the wait for the lock ends only when the INSERT's result comes back: the
  recorder's call covers the wait for the lock and the insert's round trip,
  and nothing finer can be timed from the client. "lock+insert" is the share
  of the workers' time spent in it; "write tx" a write transaction's time
  less that, as the worker sees it: encoding the event before the insert,
  then the read tables' writes and the COMMIT, which run while the lock is
  held. The lock is held from the moment it is granted to the COMMIT, so one
  writer's round trips after the lock bound the throughput of all workers
  together, however many there are.
* Memory: each worker resets the kernel's peak-RSS mark
  (``/proc/self/clear_refs``) after its warm-up and reports its peak RSS
  (``VmHWM``) at the end, and how far that is above its RSS before the run.
* Checks after every run, in the database: the events added to the store
  equal the awards the workers were told of (plus the warm-ups); for the run's
  users, exactly one ``Unlocked`` and one ``LevelUpgraded`` event per (user,
  achievement); every holding (``hero_achievement_unlocked``) at level 2; one
  ``unlocked`` and one ``upgraded`` ledger entry per user. A failed check makes
  the exit status 1.

The database is the PostgreSQL database named by ``HERO_BENCH_POSTGRES_URL``
(default ``postgres://postgres@127.0.0.1:5432/hero_bench``), created if
missing; the run's tables go in a schema of their own,
``hero_concurrency_bench`` (``--schema``), created fresh at the start and
dropped at the end.

hero takes ``LOCK TABLE hero_stored_event IN EXCLUSIVE MODE`` in each write
transaction on PostgreSQL, so that positions are committed in order; write
transactions therefore run one at a time, from the lock to the commit, and
only the work before the lock (reading the aggregate, deciding, encoding the
event) overlaps.

Run it from the repository's root::

    .venv/bin/python benchmarks/concurrency.py [--workers 1,2,4] [--users 400]
        [--repeat 3] [--no-shared] [--schema NAME] [--summary FILE.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import queue
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for directory in (ROOT, HERE):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

import _postgres  # noqa: E402
from _machine import (  # noqa: E402
    current_rss,
    load_average,
    machine_line,
    mb,
    peak_rss,
    print_table,
    reset_peak_rss,
    versions_line,
)

SCHEMA = "hero_concurrency_bench"
SCENARIOS = ("own", "shared")
LABELS = {"own": "own users", "shared": "shared users"}
ACHIEVEMENT = "points"
#: The calls each worker makes for each of its users, in this order, and the
#: level each one awards.
CALLS = ((10, 1), (100, 2))
BARRIER_TIMEOUT = 300.0
UNLOCKED = "hero:UserAchievement.Unlocked"
UPGRADED = "hero:UserAchievement.LevelUpgraded"


# -- options ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time concurrent unlock() calls on PostgreSQL with several "
        "worker processes.",
    )
    parser.add_argument(
        "--workers",
        default="1,2,4",
        help="worker counts, comma-separated (default 1,2,4)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=400,
        help="users per worker (own users) and users in all (shared users); "
        "each gets two calls (default 400)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each scenario and worker count; the fastest is kept (default 3)",
    )
    parser.add_argument(
        "--no-shared",
        action="store_true",
        help="skip the scenario in which the workers contend for the same users",
    )
    parser.add_argument(
        "--schema",
        default=SCHEMA,
        help=f"the PostgreSQL schema of the run, created and dropped (default {SCHEMA})",
    )
    parser.add_argument(
        "--summary",
        metavar="FILE",
        help="also write the figures and checks as JSON to FILE (for run_all.py)",
    )
    options = parser.parse_args(argv)
    try:
        options.worker_counts = sorted({int(n) for n in options.workers.split(",")})
    except ValueError:
        parser.error("--workers takes numbers separated by commas, e.g. 1,2,4")
    if not options.worker_counts or min(options.worker_counts) < 1:
        parser.error("--workers must name at least one count, each at least 1")
    if options.users < 1 or options.repeat < 1:
        parser.error("--users and --repeat must be at least 1")
    return options


# -- Django ----------------------------------------------------------------


def configure_django(database: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="concurrency-benchmark",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "hero"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        HERO_DATABASE="default",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    django.setup()


def users_named(names: Sequence[str]) -> list[Any]:
    """The users with these usernames, in the order given."""
    from django.contrib.auth import get_user_model

    found = {
        user.username: user
        for user in get_user_model().objects.filter(username__in=list(names))
    }
    return [found[name] for name in names]


# -- a worker (child process) ----------------------------------------------


class Instruments:
    """Counters a worker keeps around hero's calls, outside hero's code: how
    often an aggregate is loaded to decide (once per attempt), how long the
    recorder's ``_insert_events`` takes (the wait for the table lock and the
    event's INSERT, sent together), and how long hero's write transactions
    last (from the start of the atomic block to the end of the COMMIT)."""

    def __init__(self, ledger: Any) -> None:
        self.attempts = 0
        self.transactions = 0
        self.lock_and_insert = 0.0
        self.in_transaction = 0.0
        load = ledger.user_achievement
        owned_transaction = ledger.datastore.owned_transaction
        insert_events = ledger.recorder._insert_events

        def counted_load(user_pk: str, achievement_id: str) -> Any:
            self.attempts += 1
            return load(user_pk, achievement_id)

        @contextmanager
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
    number: int,
    database: dict[str, Any],
    names: list[str],
    warmup_name: str,
    barrier: Any,
    results: Any,
) -> None:
    """Set up, warm up, wait for the others, then make the calls and report."""
    try:
        configure_django(database)
        import _hero_points

        from hero.exceptions import UnlockConflict
        from hero.ledger import get_ledger

        users = users_named(names)
        (warmup,) = users_named([warmup_name])
        for points, _ in CALLS:
            _hero_points.call(warmup, points)

        instruments = Instruments(get_ledger())
        gc.collect()
        rss_before = current_rss()
        reset = reset_peak_rss()
        barrier.wait(timeout=BARRIER_TIMEOUT)
        started = time.monotonic()
        calls = awards = conflicts = 0
        for points, _ in CALLS:
            for user in users:
                try:
                    awards += len(_hero_points.call(user, points))
                except UnlockConflict:
                    conflicts += 1
                calls += 1
        finished = time.monotonic()
        results.put(
            {
                "number": number,
                "calls": calls,
                "awards": awards,
                "attempts": instruments.attempts,
                "conflicts": conflicts,
                "transactions": instruments.transactions,
                "lock_and_insert": instruments.lock_and_insert,
                "in_transaction": instruments.in_transaction,
                "started": started,
                "finished": finished,
                "rss_before": rss_before,
                "rss_peak": peak_rss(reset),
            }
        )
    except BaseException:
        barrier.abort()
        results.put({"number": number, "error": traceback.format_exc()})


# -- one run (parent) ------------------------------------------------------


@dataclass
class Run:
    scenario: str
    workers: int
    users: int  # distinct users the calls were about
    reports: list[dict[str, Any]]
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def awards(self) -> int:
        return sum(int(r["awards"]) for r in self.reports)

    @property
    def calls(self) -> int:
        return sum(int(r["calls"]) for r in self.reports)

    @property
    def seconds(self) -> float:
        return float(
            max(r["finished"] for r in self.reports)
            - min(r["started"] for r in self.reports)
        )

    @property
    def rate(self) -> float:
        return self.awards / self.seconds

    def worker_rates(self) -> list[float]:
        return [
            int(r["awards"]) / (float(r["finished"]) - float(r["started"]))
            for r in self.reports
        ]

    @property
    def retries(self) -> int:
        return sum(int(r["attempts"]) - int(r["calls"]) for r in self.reports)

    @property
    def conflicts(self) -> int:
        return sum(int(r["conflicts"]) for r in self.reports)

    def lock_and_insert_share(self) -> float:
        """The share of the workers' time spent in the recorder's
        ``_insert_events``: waiting for the table lock, and the event's INSERT
        (sent with the lock, in one round trip)."""
        spent = sum(float(r["lock_and_insert"]) for r in self.reports)
        busy = sum(float(r["finished"]) - float(r["started"]) for r in self.reports)
        return spent / busy

    def write_per_transaction(self) -> float:
        """Seconds per write transaction, less its lock wait and event insert:
        encoding the event, the read tables' writes and the COMMIT."""
        rest = sum(
            float(r["in_transaction"]) - float(r["lock_and_insert"])
            for r in self.reports
        )
        return rest / max(1, sum(int(r["transactions"]) for r in self.reports))

    def peak_rss(self) -> int:
        return max(int(r["rss_peak"]) for r in self.reports)

    def rss_growth(self) -> int:
        return max(int(r["rss_peak"]) - int(r["rss_before"]) for r in self.reports)


def create_users(names: Sequence[str]) -> None:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=name, password="!") for name in names], batch_size=1000
    )


def stored_events() -> int:
    from hero.models import StoredEvent

    return int(StoredEvent.objects.count())


def run_once(
    scenario: str,
    workers: int,
    run_number: int,
    options: argparse.Namespace,
    database: dict[str, Any],
) -> Run:
    """Start the workers together on fresh users; check what they wrote."""
    from django.db import connections

    prefix = f"{scenario}{workers}-{run_number}"
    if scenario == "own":
        names = [
            [f"{prefix}-w{k}-{i:06d}" for i in range(options.users)]
            for k in range(workers)
        ]
        measured = [name for own in names for name in own]
    else:
        measured = [f"{prefix}-s-{i:06d}" for i in range(options.users)]
        names = [measured] * workers
    warmups = [f"{prefix}-warmup-{k}" for k in range(workers)]
    create_users([*measured, *warmups])
    before = stored_events()
    connections.close_all()

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers + 1)
    results = context.Queue()
    processes = [
        context.Process(
            target=worker_main,
            args=(k, database, names[k], warmups[k], barrier, results),
            name=f"unlock-worker-{k}",
        )
        for k in range(workers)
    ]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    try:
        barrier.wait(timeout=BARRIER_TIMEOUT)
    except Exception:  # a worker failed before the start: its report says why
        pass
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
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise SystemExit(
            f"{LABELS[scenario]}, {workers} worker(s): a worker failed:\n"
            + "\n".join(errors)
        )
    run = Run(
        scenario, workers, len(measured), sorted(reports, key=lambda r: r["number"])
    )
    check(run, measured, before, warmups=workers)
    return run


def check(run: Run, measured: Sequence[str], before: int, warmups: int) -> None:
    """What the run wrote, against what the workers were told."""
    from django.db import connection
    from django.db.models import Count

    from hero.events import user_achievement_id
    from hero.models import AchievementUnlocked, LedgerEntry

    users = users_named(measured)
    expected_awards = len(users) * len(CALLS)
    added = stored_events() - before
    if run.awards != expected_awards:
        run.problems.append(
            f"the workers were told of {run.awards} awards, not {expected_awards}"
        )
    if added != run.awards + warmups * len(CALLS):
        run.problems.append(
            f"{added} events were added to the store for {run.awards} awards and "
            f"{warmups * len(CALLS)} warm-up awards"
        )
    originators = [user_achievement_id(str(user.pk), ACHIEVEMENT) for user in users]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT topic, COUNT(*), COUNT(DISTINCT originator_id) "
            "FROM hero_stored_event WHERE originator_id = ANY(%s) GROUP BY topic",
            [originators],
        )
        topics = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
    once_each = (len(users), len(users))
    if topics != {UNLOCKED: once_each, UPGRADED: once_each}:
        run.problems.append(
            f"events of the run's users by topic (events, aggregates): {topics}; "
            f"wanted {once_each} for each of Unlocked and LevelUpgraded"
        )
    pks = [user.pk for user in users]
    holdings = dict(
        AchievementUnlocked.objects.filter(user__in=pks, achievement_id=ACHIEVEMENT)
        .values_list("level")
        .annotate(n=Count("id"))
        .values_list("level", "n")
    )
    if holdings != {2: len(users)}:
        run.problems.append(f"holdings by level {holdings}, wanted {{2: {len(users)}}}")
    ledger = dict(
        LedgerEntry.objects.filter(user__in=pks)
        .values_list("kind")
        .annotate(n=Count("position"))
        .values_list("kind", "n")
    )
    if ledger != {"unlocked": len(users), "upgraded": len(users)}:
        run.problems.append(f"ledger entries by kind {ledger}")
    if not run.problems:
        run.checks.append(
            f"{LABELS[run.scenario]}, {run.workers} worker(s): {len(users):,} users, "
            f"{added:,} events added = {run.awards:,} awards reported + "
            f"{warmups * len(CALLS)} warm-up; one Unlocked and one LevelUpgraded "
            "per user, every holding at level 2, one ledger entry of each kind"
        )


# -- reporting -------------------------------------------------------------


def print_header(options: argparse.Namespace) -> None:
    from django.db import connection

    settings = _postgres.server_settings(
        ("server_version", "synchronous_commit", "fsync", "max_connections")
    )
    print(machine_line())
    print(versions_line())
    print(
        f"PostgreSQL {settings['server_version']} "
        f"({connection.settings_dict['HOST'] or 'local socket'}, database "
        f"{connection.settings_dict['NAME']}, schema {options.schema}); "
        f"synchronous_commit={settings['synchronous_commit']}, fsync={settings['fsync']}"
    )
    print(
        f"--workers {','.join(map(str, options.worker_counts))}, --users "
        f"{options.users}, --repeat {options.repeat}; {len(CALLS)} calls per user "
        "(points=10: first award, points=100: upgrade), inline projections"
    )
    print()


def print_own(runs: dict[int, Run]) -> None:
    base = runs.get(1)
    headers = (
        "workers",
        "awards",
        "seconds",
        "awards/s",
        "per worker awards/s",
        "speedup",
        "retries",
        "gave up",
        "lock+insert",
        "write tx",
        "peak RSS/worker",
        "RSS growth/worker",
    )
    rows = []
    for workers, run in sorted(runs.items()):
        rates = run.worker_rates()
        spread = (
            f"{min(rates):,.0f}"
            if len(rates) == 1
            else f"{sum(rates) / len(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
        )
        rows.append(
            (
                str(workers),
                f"{run.awards:,}",
                f"{run.seconds:.2f}",
                f"{run.rate:,.0f}",
                spread,
                f"{run.rate / base.rate:.2f}" if base else "-",
                f"{run.retries:,}",
                f"{run.conflicts:,}",
                f"{run.lock_and_insert_share():.0%}",
                f"{run.write_per_transaction() * 1000:.2f} ms",
                mb(run.peak_rss()),
                mb(run.rss_growth()),
            )
        )
    print_table(headers, rows)


def print_shared(runs: dict[int, Run]) -> None:
    headers = (
        "workers",
        "calls",
        "awards",
        "seconds",
        "awards/s",
        "calls/s",
        "retries",
        "gave up",
        "lock+insert",
        "write tx",
        "peak RSS/worker",
    )
    rows = [
        (
            str(workers),
            f"{run.calls:,}",
            f"{run.awards:,}",
            f"{run.seconds:.2f}",
            f"{run.rate:,.0f}",
            f"{run.calls / run.seconds:,.0f}",
            f"{run.retries:,}",
            f"{run.conflicts:,}",
            f"{run.lock_and_insert_share():.0%}",
            f"{run.write_per_transaction() * 1000:.2f} ms",
            mb(run.peak_rss()),
        )
        for workers, run in sorted(runs.items())
    ]
    print_table(headers, rows)


def write_summary(
    path: str,
    best: dict[str, dict[int, Run]],
    passed: bool,
    options: argparse.Namespace,
) -> None:
    summary: dict[str, Any] = {
        "benchmark": "concurrency",
        "users": options.users,
        "checks_passed": passed,
    }
    for scenario, runs in best.items():
        base = runs.get(1)
        summary[scenario] = {
            str(workers): {
                "awards_per_second": run.rate,
                "calls_per_second": run.calls / run.seconds,
                "per_worker_awards_per_second": run.worker_rates(),
                "speedup": run.rate / base.rate if base else None,
                "retries": run.retries,
                "gave_up": run.conflicts,
                "lock_and_insert_share": run.lock_and_insert_share(),
                "write_ms_less_lock_and_insert": run.write_per_transaction() * 1000,
                "peak_rss_mb": run.peak_rss() / (1024 * 1024),
            }
            for workers, run in sorted(runs.items())
        }
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")


# -- main ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    started = time.perf_counter()
    with _postgres.fresh_schema(options.schema) as database:
        configure_django(database)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print_header(options)
        scenarios = [
            (scenario, workers)
            for scenario in SCENARIOS
            for workers in options.worker_counts
            if not (scenario == "shared" and (workers < 2 or options.no_shared))
        ]
        best: dict[str, dict[int, Run]] = {}
        problems: list[str] = []
        checks: list[str] = []
        for run_number in range(options.repeat):
            for scenario, workers in scenarios:
                run = run_once(scenario, workers, run_number, options, database)
                problems += run.problems
                checks += run.checks[:1] if run_number == 0 else []
                print(
                    f"  run {run_number + 1}, {LABELS[scenario]}, {workers} worker(s): "
                    f"{run.awards:,} awards in {run.seconds:.2f} s = "
                    f"{run.rate:,.0f} awards/s, {run.retries:,} retries"
                    f"{'' if not run.problems else ' -- CHECK FAILED'}",
                    flush=True,
                )
                kept = best.setdefault(scenario, {}).get(workers)
                if kept is None or run.rate > kept.rate:
                    best[scenario][workers] = run
        print()
        if "own" in best:
            print(
                "Own users: every call writes (a first award, then an upgrade); "
                f"{options.users} users per worker"
            )
            print_own(best["own"])
            print()
        if "shared" in best:
            print(
                "Shared users: every worker makes the same calls for the same "
                f"{options.users} users; one wins each award"
            )
            print_shared(best["shared"])
            print()
        print(
            "awards/s: awards returned by all workers / seconds from the first\n"
            "worker's start to the last one's end (best of the runs). per worker:\n"
            "each worker's awards / its own seconds, mean (min-max). speedup: awards/s\n"
            "against one worker's. retries: aggregate loads beyond one per call\n"
            "(decisions made again after losing a race); gave up: UnlockConflict.\n"
            "lock+insert: the share of the workers' time spent in the recorder's\n"
            "_insert_events: LOCK TABLE and the event's INSERT, sent together, so\n"
            "the wait for another worker's write transaction to end and the insert's\n"
            "round trip (with one worker: the round trip alone). write tx: a write\n"
            "transaction's time less that, mean per write transaction, as the worker\n"
            "sees it: encoding the event, then, under the lock, the read tables'\n"
            "writes and the COMMIT.\n"
            "peak RSS/worker: the largest worker's peak RSS (VmHWM) during the run;\n"
            "RSS growth: the largest rise above a worker's RSS before the run."
        )
        print()
        for problem in problems:
            print(f"CHECK FAILED: {problem}")
        for line in checks:
            print(f"Checked: {line}")
        if not problems:
            print(f"Checked: the same in each of the {options.repeat} runs of each")
        if options.summary:
            write_summary(options.summary, best, not problems, options)
        print(
            f"\nWhole run {time.perf_counter() - started:.0f} s; "
            f"load average at the end {load_average()}"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
