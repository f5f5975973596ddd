"""Unlock-path benchmark: hero against pinax-badges 3.0.0, side by side.

Both libraries get the same achievement (a four-level "points" achievement, see
``_points.py``), the same users and the same database, and are timed in the
same process, interleaved, on four paths:

    (a) a call that awards nothing      points=5, the user holds nothing
    (b) a first award                   points=10, once per user -> level 1
    (c) a level upgrade                 points=100, once per user holding level 1
    (d) a repeat at the level held      points=100 again

Each round takes fresh users and runs (a), (b), (c), (d) over all of them, for
one library then the other (the order alternates from one round and path to the
next). A path's figure is the best of the rounds, in calls per second
(``time.perf_counter`` around the loop, garbage collection paused). SQL
statements per call are counted separately, on a small sample of other users
with ``CaptureQueriesContext``, never inside a timed loop. Before that, a few
users go through every path untimed, as a warm-up.

Memory is measured after the timed rounds, in a pass of its own on 20 other
users, so that tracing allocations slows no timed call: under ``tracemalloc``,
each user goes through the four paths with each library, and a (library, path)
gets the largest peak of Python allocations during one call, above what was
allocated before it. What SQLite or the PostgreSQL driver allocate in C is not
traced; the process's peak RSS (both libraries, the whole run) is printed too.

The database is a fresh SQLite file per run (WAL, synchronous=NORMAL,
``transaction_mode`` IMMEDIATE), or with ``--database postgres`` the PostgreSQL
database named by ``HERO_BENCH_POSTGRES_URL`` (default
``postgres://postgres@127.0.0.1:5432/hero_bench``), created if missing; the
run's tables go in a schema of their own, ``hero_unlock_bench``, created fresh
at the start and dropped at the end. Calls run in autocommit mode, as from a
view without ``ATOMIC_REQUESTS``.

Run it from the repository's root, with pinax-badges 3.0.0 installed::

    .venv/bin/pip install --no-deps pinax-badges==3.0.0
    .venv/bin/python benchmarks/unlock.py [--users N] [--repeat K]
        [--database sqlite|postgres] [--only hero|pinax] [--show-queries]
        [--summary FILE.json]

The exit status is 1 when a check of the results fails.

What each library does per call
-------------------------------
pinax-badges 3.0.0 (``Badge.possibly_award`` -> ``actually_possibly_award``,
synchronous since ``async_`` is False), in autocommit, no transaction of its own:

    (a) ``award()`` returns None: no SQL at all.
    (b) SELECT the user's ``BadgeAward`` rows for (slug, level) -- the queryset
        is evaluated in full to test it for truth -- finds none, INSERTs one.
        Each statement is its own transaction; nothing stops two concurrent
        calls from both inserting (there is no unique constraint).
    (c) the same SELECT for the new level, then INSERT: the Bronze row stays,
        so a user holding Silver has two rows.
    (d) the same SELECT finds the row: one statement, nothing written.
    It then fires ``badge_awarded`` and looks up an optional ``user_message``;
    neither touches the database here.

hero (``hero.achievements.unlock()`` -> ``Ledger.record_awards``), as of the
revision the header prints; ``--show-queries`` lists the exact statements:

    (a) checks the event name and the user, asks each listening achievement;
        none answers with a level: no SQL at all.
    (b) loads the (user, achievement) aggregate -- one SELECT of its events,
        in autocommit -- lets it decide, then saves the new event in one
        transaction: BEGIN (IMMEDIATE on SQLite; on PostgreSQL also LOCK TABLE
        hero_stored_event IN EXCLUSIVE MODE), INSERT ... RETURNING (the chain
        link computed in SQL), a SELECT of the views' positions in
        hero_tracking (current with the store: left as they are), the inline
        views' writes (catalog row if missing, holding, count, ledger entry),
        COMMIT. A concurrent writer of the same aggregate is refused by the
        unique (originator_id, originator_version) and the call decides again.
    (c) the same, the SELECT now reading two events; the holding is UPDATEd
        and two counts change.
    (d) the SELECT only: the aggregate already holds the level, nothing is
        saved and the call returns [].
    Signals are sent on commit; no receivers are connected here.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for directory in (ROOT, HERE):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

import _postgres  # noqa: E402
from _machine import (  # noqa: E402
    hero_revision,
    machine_line,
    mb,
    package_version,
    peak_rss,
)

LIBRARIES = ("hero", "pinax")
POSTGRES_SCHEMA = "hero_unlock_bench"
WARMUP_USERS = 20
SAMPLE_USERS = 10
MEMORY_USERS = 20

Call = Callable[[Any, int], object]


@dataclass(frozen=True)
class UnlockPath:
    key: str
    label: str
    points: int
    #: The levels hero's outcomes report on this path (none when nothing changes).
    new_levels: tuple[int, ...]


PATHS: tuple[UnlockPath, ...] = (
    UnlockPath("a", "(a) awards nothing", 5, ()),
    UnlockPath("b", "(b) first award", 10, (1,)),
    UnlockPath("c", "(c) level upgrade", 100, (2,)),
    UnlockPath("d", "(d) repeat, level held", 100, ()),
)


@dataclass(frozen=True)
class QueryCount:
    """SQL statements per call, averaged over a sample."""

    statements: float
    transaction_control: float


@dataclass(frozen=True)
class Sample:
    """One library's calls on one path, outside the timed loops."""

    queries: QueryCount
    first_sql: list[str]
    returned: list[object]


@dataclass
class Results:
    libraries: tuple[str, ...]
    best_rate: dict[tuple[str, str], float]
    samples: dict[tuple[str, str], Sample]
    #: The largest tracemalloc peak of one call (bytes), from the memory pass.
    peak_memory: dict[tuple[str, str], int]


# -- options ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time hero's and pinax-badges' unlock paths side by side.",
    )
    parser.add_argument(
        "--users", type=int, default=1000, help="users per round (default 1000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="rounds; the best is kept (default 5)"
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--only", choices=LIBRARIES, help="measure one library only")
    parser.add_argument(
        "--show-queries",
        action="store_true",
        help="print the SQL each library sends on each path (from the sample)",
    )
    parser.add_argument(
        "--summary",
        metavar="FILE",
        help="also write the figures and checks as JSON to FILE (for run_all.py)",
    )
    options = parser.parse_args(argv)
    if options.users < 1 or options.repeat < 1:
        parser.error("--users and --repeat must be at least 1")
    return options


# -- databases -------------------------------------------------------------


def sqlite_database(directory: str) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(directory, "unlock.sqlite3"),
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


@contextmanager
def database_config(kind: str) -> Iterator[dict[str, Any]]:
    """The ``default`` database for this run, empty, and removed afterwards."""
    from django.db import connections

    if kind == "postgres":
        with _postgres.fresh_schema(POSTGRES_SCHEMA) as config:
            yield config
        return
    directory = tempfile.mkdtemp(prefix="hero-unlock-bench-")
    try:
        yield sqlite_database(directory)
    finally:
        connections.close_all()
        shutil.rmtree(directory, ignore_errors=True)


# -- Django ----------------------------------------------------------------


def configure_django(database: dict[str, Any], libraries: tuple[str, ...]) -> None:
    import django
    from django.conf import settings

    apps = ["django.contrib.auth", "django.contrib.contenttypes"]
    if "hero" in libraries:
        apps.append("hero")
    if "pinax" in libraries:
        import _pinax_shims

        _pinax_shims.apply()
        apps.append("pinax.badges")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="unlock-benchmark",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DATABASES={"default": database},
        INSTALLED_APPS=apps,
        # pinax's migration creates an integer id; keep its model in step.
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        HERO_DATABASE="default",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    django.setup()


def prepare_schema() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, run_syncdb=True)


def create_users(count: int) -> list[Any]:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [
            user_model(username=f"bench-{number:07d}", password="!")
            for number in range(count)
        ],
        batch_size=500,
    )
    return list(user_model.objects.order_by("pk"))


def load_callers(libraries: tuple[str, ...]) -> dict[str, Call]:
    callers: dict[str, Call] = {}
    if "hero" in libraries:
        import _hero_points

        callers["hero"] = _hero_points.call
    if "pinax" in libraries:
        import _pinax_points

        callers["pinax"] = _pinax_points.call
    return callers


def hero_api_available() -> bool:
    try:
        return importlib.util.find_spec("hero.achievements") is not None
    except ImportError:
        return False


# -- measuring -------------------------------------------------------------


def run_path(call: Call, users: Sequence[Any], points: int) -> None:
    for user in users:
        call(user, points)


def time_path(call: Call, users: Sequence[Any], points: int) -> float:
    """Seconds taken by one call per user, with garbage collection paused."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for user in users:
            call(user, points)
        return time.perf_counter() - start
    finally:
        gc.enable()


def is_transaction_control(sql: str) -> bool:
    return (
        sql.lstrip()
        .upper()
        .startswith(("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT"))
    )


def sample_path(call: Call, users: Sequence[Any], points: int) -> Sample:
    """One call per user with Django's query log on: statements and results."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    statements = control = 0
    first_sql: list[str] = []
    returned: list[object] = []
    for user in users:
        with CaptureQueriesContext(connection) as captured:
            returned.append(call(user, points))
        sql = [query["sql"] for query in captured.captured_queries]
        if len(returned) == 1:
            first_sql = sql
        statements += len(sql)
        control += sum(1 for text in sql if is_transaction_control(text))
    calls = len(users)
    return Sample(QueryCount(statements / calls, control / calls), first_sql, returned)


def time_rounds(
    callers: dict[str, Call], users: Sequence[Any], per_round: int, rounds: int
) -> dict[tuple[str, str], float]:
    """Best calls per second of each (library, path) over ``rounds`` rounds."""
    libraries = tuple(callers)
    best_rate: dict[tuple[str, str], float] = {}
    for round_number in range(rounds):
        round_users = users[round_number * per_round : (round_number + 1) * per_round]
        for path_number, path in enumerate(PATHS):
            # Alternate which library goes first, so neither always follows the other.
            flip = (round_number + path_number) % 2
            for library in libraries[::-1] if flip else libraries:
                seconds = time_path(callers[library], round_users, path.points)
                rate = len(round_users) / seconds
                key = (library, path.key)
                best_rate[key] = max(rate, best_rate.get(key, 0.0))
    return best_rate


def memory_pass(
    callers: dict[str, Call], users: Sequence[Any]
) -> dict[tuple[str, str], int]:
    """Under tracemalloc, after the timed rounds: each user through every path
    with each library; the largest peak of Python allocations of one call
    (above what was allocated before it), per library and path."""
    peaks: dict[tuple[str, str], int] = {}
    gc.collect()
    tracemalloc.start()
    try:
        for path in PATHS:
            for library, call in callers.items():
                peak = 0
                for user in users:
                    before = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    call(user, path.points)
                    peak = max(peak, tracemalloc.get_traced_memory()[1] - before)
                peaks[library, path.key] = peak
    finally:
        tracemalloc.stop()
    return peaks


def measure(
    callers: dict[str, Call], users: Sequence[Any], per_round: int, rounds: int
) -> Results:
    """Warm up, sample the SQL, time, then measure memory: each stage on its
    own users."""
    warmup = users[:WARMUP_USERS]
    sample = users[WARMUP_USERS : WARMUP_USERS + SAMPLE_USERS]
    memory = users[
        WARMUP_USERS + SAMPLE_USERS : WARMUP_USERS + SAMPLE_USERS + MEMORY_USERS
    ]
    timed = users[WARMUP_USERS + SAMPLE_USERS + MEMORY_USERS :]
    for path in PATHS:
        for call in callers.values():
            run_path(call, warmup, path.points)
    samples = {
        (library, path.key): sample_path(call, sample, path.points)
        for path in PATHS
        for library, call in callers.items()
    }
    best_rate = time_rounds(callers, timed, per_round, rounds)
    peak_memory = memory_pass(callers, memory)
    return Results(tuple(callers), best_rate, samples, peak_memory)


def check_hero_outcomes(results: Results) -> tuple[bool, str]:
    """hero's outcomes in the sample: the new level on (b) and (c), none otherwise."""
    wrong = []
    for path in PATHS:
        for returned in results.samples["hero", path.key].returned:
            levels = tuple(outcome.level for outcome in returned)  # type: ignore[attr-defined]
            if levels != path.new_levels:
                wrong.append(f"{path.label} returned {returned!r}")
                break
    if wrong:
        return False, "hero outcomes UNEXPECTED: " + "; ".join(wrong)
    return True, "hero outcomes in the sample: as expected"


def check_pinax_awards(users: int) -> tuple[bool, str]:
    """Every user went through (b) and (c): one row at pinax's levels 0 and 1 each."""
    from django.db.models import Count
    from pinax.badges.models import BadgeAward

    rows = dict(
        BadgeAward.objects.values_list("level")
        .annotate(n=Count("id"))
        .values_list("level", "n")
    )
    expected = {0: users, 1: users}
    verdict = "as expected" if rows == expected else f"UNEXPECTED (wanted {expected})"
    return (
        rows == expected,
        f"pinax BadgeAward rows by level index: {rows} -- {verdict}",
    )


# -- reporting -------------------------------------------------------------


def database_description(kind: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if kind == "postgres":
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
            where = f"{connection.settings_dict['NAME']}, schema {POSTGRES_SCHEMA}"
            return f"PostgreSQL {version} ({where})"
        cursor.execute("SELECT sqlite_version()")
        version = cursor.fetchone()[0]
        cursor.execute("PRAGMA journal_mode")
        journal = cursor.fetchone()[0]
        cursor.execute("PRAGMA synchronous")
        synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
            cursor.fetchone()[0]
        ]
    mode = connection.transaction_mode
    return (
        f"SQLite {version} file, journal_mode={journal}, synchronous={synchronous}, "
        f"transaction_mode={mode}"
    )


def print_header(kind: str, options: argparse.Namespace) -> None:
    import django

    print(machine_line())
    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"eventsourcing {package_version('eventsourcing')}, "
        f"django-hero {package_version('django-hero')} (git {hero_revision()}), "
        f"pinax-badges {package_version('pinax-badges')}; {os.cpu_count()} CPUs"
    )
    print(database_description(kind))
    print(
        f"{options.users} users per round, best of {options.repeat} "
        f"round{'' if options.repeat == 1 else 's'}, "
        f"{SAMPLE_USERS} users for the SQL counts, {WARMUP_USERS} for the warm-up, "
        f"{MEMORY_USERS} for the memory pass"
    )
    print()


def format_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def format_count(count: QueryCount | None) -> str:
    if count is None:
        return "-"

    def number(value: float) -> str:
        return f"{value:g}" if value == int(value) else f"{value:.2f}"

    text = number(count.statements)
    if count.transaction_control:
        text += f" ({number(count.transaction_control)} tx)"
    return text


def format_memory(peak: int | None) -> str:
    return "-" if peak is None else f"{peak / 1024:,.1f} KB"


def write_summary(path: str, kind: str, results: Results, passed: bool) -> None:
    """The figures of the table, and whether the checks passed, as JSON."""
    summary = {
        "benchmark": "unlock",
        "database": kind,
        "paths": {
            path.key: {
                "label": path.label,
                "rate": {
                    library: results.best_rate.get((library, path.key))
                    for library in results.libraries
                },
                "peak_kb": {
                    library: results.peak_memory[library, path.key] / 1024
                    for library in results.libraries
                },
            }
            for path in PATHS
        },
        "peak_rss_mb": peak_rss(reset=False) / (1024 * 1024),
        "checks_passed": passed,
    }
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")


def sample_queries(
    results: Results, library: str, path: UnlockPath
) -> QueryCount | None:
    sample = results.samples.get((library, path.key))
    return None if sample is None else sample.queries


def print_table(results: Results) -> None:
    headers = (
        "path",
        "hero calls/s",
        "pinax calls/s",
        "hero/pinax",
        "hero SQL/call",
        "pinax SQL/call",
        "hero peak",
        "pinax peak",
    )
    rows = []
    for path in PATHS:
        hero = results.best_rate.get(("hero", path.key))
        pinax = results.best_rate.get(("pinax", path.key))
        ratio = f"{hero / pinax:.2f}" if hero and pinax else "-"
        rows.append(
            (
                path.label,
                format_rate(hero),
                format_rate(pinax),
                ratio,
                format_count(sample_queries(results, "hero", path)),
                format_count(sample_queries(results, "pinax", path)),
                format_memory(results.peak_memory.get(("hero", path.key))),
                format_memory(results.peak_memory.get(("pinax", path.key))),
            )
        )
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    line = "  ".join(
        header.ljust(width) if i == 0 else header.rjust(width)
        for i, (header, width) in enumerate(zip(headers, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
    print()
    print(
        "SQL/call: statements in Django's query log per call (sample average),\n"
        "transaction control included; '(n tx)' says how many of them were\n"
        "BEGIN, SAVEPOINT, RELEASE, COMMIT or ROLLBACK.\n"
        "peak: Python allocations during one call, above those before it\n"
        f"(tracemalloc; the largest over {MEMORY_USERS} users, in an untimed pass\n"
        "after the timed rounds); memory the database driver or SQLite allocates\n"
        "in C is not counted.\n"
        f"Peak RSS of this process (both libraries, the whole run): "
        f"{mb(peak_rss(reset=False))}"
    )


def print_queries(results: Results) -> None:
    for path in PATHS:
        for library in results.libraries:
            sample = results.samples[library, path.key]
            print(f"\n{library} {path.label}: returned {sample.returned[0]!r}")
            for text in sample.first_sql or ["(no SQL)"]:
                print(f"    {text}")


# -- main ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    libraries = (options.only,) if options.only else LIBRARIES
    if "hero" in libraries and not hero_api_available():
        print(
            "hero.achievements cannot be imported yet; run with --only pinax "
            "to measure pinax-badges alone.",
            file=sys.stderr,
        )
        return 2
    total_users = (
        WARMUP_USERS + SAMPLE_USERS + MEMORY_USERS + options.users * options.repeat
    )
    with database_config(options.database) as database:
        configure_django(database, libraries)
        prepare_schema()
        print_header(options.database, options)
        callers = load_callers(libraries)
        users = create_users(total_users)
        started = time.perf_counter()
        results = measure(callers, users, options.users, options.repeat)
        print_table(results)
        checks = []
        if "hero" in libraries:
            checks.append(check_hero_outcomes(results))
        if "pinax" in libraries:
            checks.append(check_pinax_awards(total_users))
        for _, text in checks:
            print(text)
        if options.show_queries:
            print_queries(results)
        passed = all(ok for ok, _ in checks)
        if options.summary:
            write_summary(options.summary, options.database, results, passed)
        print(f"\nmeasured in {time.perf_counter() - started:.1f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
