"""Unlock-path benchmark: hero against pinax-badges 3.0.0, side by side.

Both libraries get the same "points" achievement (``_points.py``), users and
database, timed in one process, interleaved, on four paths (:data:`PATHS`); also
SQL per call, memory per call, and checks of what each returned or wrote; on
PostgreSQL, ``--trace FILE`` also counts each call's exchanges with the server
(``_trace.py``). ``README.md`` has the method. Needs
``pip install --no-deps pinax-badges==3.0.0``.

``--sealing-cost`` puts hero beside itself instead: hero as it is, and hero
with the sealing of personal fields off (``hero-unsealed``, on twin users of
its own), to measure what sealing costs each path.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import _harness
import _trace
from _points import Call

LIBRARIES = ("hero", "pinax")
#: The pair that --sealing-cost compares.
SEALING_PAIR = ("hero", "hero-unsealed")
WARMUP_USERS = 20
SAMPLE_USERS = 10
MEMORY_USERS = 20
TRACE_USERS = 10
#: The exchanges with the server an award may take (``--trace``).
EXCHANGES_GOAL = 3


@dataclass(frozen=True)
class UnlockPath:
    key: str
    label: str
    points: int
    #: The levels hero's outcomes report on this path (none when nothing changes).
    new_levels: tuple[int, ...]
    #: Calls of one library before the other takes its turn (0: the round's):
    #: (a), a few microseconds of Python, is timed in long runs, where the
    #: switch from one library's code to the other's costs nothing.
    turn: int = 50
    #: Times a round's users are called on the path, each pass timed apart
    #: and the best pass kept (a path that changes nothing can be called
    #: again): a pass of (a) takes about a millisecond, shorter than the
    #: scheduler's time slice, so the best of many is one that no other
    #: process interrupted, as with ``timeit``. One pass of a round's users
    #: takes a few milliseconds only, and a busy millisecond falls on one
    #: library more than on the other.
    passes: int = 1


PATHS: tuple[UnlockPath, ...] = (
    UnlockPath("a", "(a) awards nothing", 5, (), turn=0, passes=40),
    UnlockPath("b", "(b) first award", 10, (1,)),
    UnlockPath("c", "(c) level upgrade", 100, (2,)),
    UnlockPath("d", "(d) repeat, level held", 100, ()),
)


@dataclass(frozen=True)
class Sample:
    """One library's calls on one path, untimed: SQL per call, SQL, returns."""

    statements: float
    transaction_control: float
    first_sql: list[str]
    returned: list[object]


@dataclass
class Results:
    """Each figure by (library, path)."""

    best_rate: dict[tuple[str, UnlockPath], float] = field(default_factory=dict)
    samples: dict[tuple[str, UnlockPath], Sample] = field(default_factory=dict)
    #: The largest tracemalloc peak of one call (bytes), from the memory pass.
    peak_memory: dict[tuple[str, UnlockPath], int] = field(default_factory=dict)
    #: libpq's trace of each call of the trace pass (``--trace``).
    traces: dict[tuple[str, UnlockPath], list[_trace.Trace]] = field(
        default_factory=dict
    )
    #: Nanoseconds over the timed passes (``--cpu``): wall, this thread's CPU,
    #: the server's CPU for the connection (None where it is not measured).
    spent: dict[tuple[str, UnlockPath], Spent] = field(default_factory=dict)


@dataclass
class Spent:
    """Where the timed calls of one (library, path) spent their time."""

    calls: int = 0
    wall: int = 0
    process: int = 0
    server: int | None = None
    #: Bytes written (:meth:`Clocks.written`), None where it is not measured.
    written: int | None = None

    def per_call(self, nanoseconds: int | None) -> str:
        if nanoseconds is None or not self.calls:
            return "-"
        # Rounded to a whole number first: a rest just under zero shows 0, not -0.
        return f"{round(nanoseconds / self.calls / 1000):,}"

    def kb_per_call(self) -> float | None:
        if self.written is None or not self.calls:
            return None
        return self.written / self.calls / 1024


class Clocks:
    """This thread's CPU time and, with PostgreSQL on this machine, the CPU
    time of the server process serving Django's connection (from
    ``/proc/<pid>/schedstat``, in nanoseconds); SQLite's work is the
    process's own."""

    def __init__(self) -> None:
        from django.db import connection

        self.schedstat: str | None = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                (pid,) = cursor.fetchone()
            path = f"/proc/{pid}/schedstat"
            try:
                with open(path) as file:
                    file.read()
            except OSError:
                pass  # a server elsewhere: its CPU time is not measured
            else:
                self.schedstat = path

    def read(self) -> tuple[int, int, int | None]:
        server = None
        if self.schedstat is not None:
            with open(self.schedstat) as file:
                server = int(file.read().split()[0])
        return time.perf_counter_ns(), time.thread_time_ns(), server

    @staticmethod
    def written() -> int | None:
        """Bytes written so far: on SQLite, by this process to its files
        (``wchar`` of ``/proc/self/io``: the journal or the WAL, and the
        database at checkpoints); on PostgreSQL, the server's WAL
        (``pg_current_wal_insert_lsn()``, the whole server's). None elsewhere.
        Read outside the clocks: the PostgreSQL query is not timed."""
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
                high, low = cursor.fetchone()[0].split("/")
            return (int(high, 16) << 32) + int(low, 16)
        if connection.vendor != "sqlite":
            return None
        try:
            with open("/proc/self/io") as file:
                fields = dict(line.split(":") for line in file)
        except OSError:
            return None  # not Linux: not measured
        return int(fields["wchar"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _harness.Options(
        "Time hero's and pinax-badges' unlock paths side by side.",
        repeat=(5, "rounds; the best is kept"),
    )
    parser.add(
        "--database", "sqlite", "the database", choices=("sqlite", "postgres", "mysql")
    )
    text = "SQLite's journal: WAL, or Django's defaults (a rollback journal)"
    parser.add("--journal", "wal", text, choices=("wal", "delete"))
    parser.add("--users", 1000, "users per round")
    parser.add("--only", None, "measure one library only", choices=LIBRARIES)
    text = (
        "time hero against hero with sealing off (hero-unsealed, twin users) "
        "instead of pinax; --only hero is implied"
    )
    parser.add("--sealing-cost", False, text)
    text = "print the SQL each library sends on each path (from the sample)"
    parser.add("--show-queries", False, text)
    text = (
        "PostgreSQL: count each call's exchanges with the server (libpq's trace, "
        f"{TRACE_USERS} users per path) and write the traces to FILE"
    )
    parser.add("--trace", None, text, metavar="FILE")
    text = (
        "also split each call's time into this process's CPU, the server's CPU "
        "(PostgreSQL on this machine) and the rest (waiting), and measure what "
        "each call writes"
    )
    parser.add("--cpu", False, text)
    text = (
        "SQLite's PRAGMA wal_autocheckpoint for the run (pages; 0: no automatic "
        "checkpoints); SQLite's default, 1000, unless given"
    )
    parser.add("--wal-autocheckpoint", None, text, type=int, metavar="PAGES")
    text = (
        "hero's HERO_PROJECTIONS: inline (the read tables written with each "
        "award), or async (the award appends its events only; no worker runs)"
    )
    parser.add("--projections", "inline", text, choices=("inline", "async"))
    options = parser.parse(argv, "users", "repeat")
    if options.trace and options.database != "postgres":
        parser.error("--trace needs --database postgres (it traces libpq)")
    if options.wal_autocheckpoint is not None:
        if options.database != "sqlite" or options.journal != "wal":
            parser.error("--wal-autocheckpoint needs SQLite with --journal wal")
        if options.wal_autocheckpoint < 0:
            parser.error("--wal-autocheckpoint takes 0 or more pages")
    return options


def setup(
    database: dict[str, Any], libraries: tuple[str, ...], projections: str = "inline"
) -> dict[str, Call]:
    """Django with the libraries and their tables; one unlock call of each.
    ``projections``: hero's ``HERO_PROJECTIONS``."""
    import _points

    if "pinax" in libraries:
        import _pinax_shims

        _pinax_shims.apply()
    apps = [{"hero": "hero", "pinax": "pinax.badges"}[name] for name in libraries]
    _harness.setup_django(
        database, "unlock", apps, migrate=True, HERO_PROJECTIONS=projections
    )
    calls = {"hero": _points.hero_call, "pinax": _points.pinax_call}
    return {library: calls[library]() for library in libraries}


def sealing_calls(
    call: Call, users: Sequence[Any], twins: Sequence[Any]
) -> dict[str, Call]:
    """hero's ``call`` as it is, and with its sealing off on each user's twin
    (hero's tables are shared, so the twin's history is its own). Both go
    through the same wrapper, so that only the sealing differs."""
    from hero.ledger import get_ledger

    ledger = get_ledger()
    sealers = {"hero": ledger.sealer, "hero-unsealed": None}
    by_pk = {
        "hero": {user.pk: user for user in users},
        "hero-unsealed": {
            user.pk: twin for user, twin in zip(users, twins, strict=True)
        },
    }

    def wrapped(library: str) -> Call:
        sealer, chosen = sealers[library], by_pk[library]

        def one(user: Any, points: int) -> Any:
            kept, ledger.sealer = ledger.sealer, sealer
            try:
                return call(chosen[user.pk], points)
            finally:
                ledger.sealer = kept

        return one

    return {library: wrapped(library) for library in SEALING_PAIR}


def sample_path(call: Call, users: Sequence[Any], points: int) -> Sample:
    """One call per user with Django's query log on: statements and results."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    control = ("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT")
    statements: list[list[str]] = []
    returned: list[object] = []
    for user in users:
        with CaptureQueriesContext(connection) as captured:
            returned.append(call(user, points))
        statements.append([query["sql"] for query in captured.captured_queries])
    every = [sql for one_call in statements for sql in one_call]
    in_control = [sql for sql in every if sql.lstrip().upper().startswith(control)]
    calls = len(users)
    return Sample(len(every) / calls, len(in_control) / calls, statements[0], returned)


def time_rounds(
    callers: dict[str, Call],
    users: Sequence[Any],
    per_round: int,
    rounds: int,
    spent: dict[tuple[str, UnlockPath], Spent] | None = None,
) -> dict[tuple[str, UnlockPath], float]:
    """Best calls per second of each (library, path), over the rounds; with
    ``spent``, also where the time of every timed call went, added up."""
    libraries = tuple(callers)
    best_rate: dict[tuple[str, UnlockPath], float] = {}
    clocks = Clocks() if spent is not None else None
    for round_number in range(rounds):
        round_users = users[round_number * per_round : (round_number + 1) * per_round]
        for path in PATHS:
            for repetition in range(path.passes):
                # The libraries take turns of path.turn calls, the first
                # alternating: on a shared machine, a busy second falls on
                # either alike. A pass's time is the sum of its turns,
                # checkpoints included.
                seconds = dict.fromkeys(libraries, 0.0)
                size = path.turn or len(round_users)
                for turn, first in enumerate(range(0, len(round_users), size)):
                    turn_users = round_users[first : first + size]
                    # (a): alternates by pass and by round
                    flip = (round_number + repetition + turn) % 2
                    for library in libraries[::-1] if flip else libraries:
                        call = callers[library]
                        with _harness.gc_paused():
                            written = clocks.written() if clocks else None
                            before = clocks.read() if clocks else None
                            start = time.perf_counter()
                            for user in turn_users:
                                call(user, path.points)
                            seconds[library] += time.perf_counter() - start
                            if clocks and before and spent is not None:
                                add_spent(
                                    spent[library, path],
                                    len(turn_users),
                                    before,
                                    clocks.read(),
                                    (written, clocks.written()),
                                )
                for library in libraries:
                    rate = len(round_users) / seconds[library]
                    best_rate[library, path] = max(
                        rate, best_rate.get((library, path), 0.0)
                    )
    return best_rate


def add_spent(
    spent: Spent,
    calls: int,
    before: tuple[int, int, int | None],
    after: tuple[int, int, int | None],
    written: tuple[int | None, int | None] = (None, None),
) -> None:
    spent.calls += calls
    spent.wall += after[0] - before[0]
    spent.process += after[1] - before[1]
    if after[2] is not None and before[2] is not None:
        spent.server = (spent.server or 0) + after[2] - before[2]
    if written[0] is not None and written[1] is not None:
        spent.written = (spent.written or 0) + written[1] - written[0]


def measure(
    callers: dict[str, Call],
    users: Sequence[Any],
    per_round: int,
    rounds: int,
    trace_users: int = 0,
    *,
    cpu: bool = False,
) -> Results:
    """Warm up, sample the SQL, time, trace memory, and with ``trace_users``
    trace the protocol: each on its own users. With ``cpu``, the timed passes
    also measure where the time went (:class:`Clocks`)."""
    sizes = (WARMUP_USERS, SAMPLE_USERS, MEMORY_USERS, trace_users)
    ends = itertools.accumulate(sizes, initial=0)
    warmup, sample, memory, traced, timed = (
        users[start:end] for start, end in itertools.pairwise([*ends, None])
    )
    results = Results()
    for path in PATHS:
        for call in callers.values():
            for user in warmup:
                call(user, path.points)
    for path in PATHS:
        for library, call in callers.items():
            results.samples[library, path] = sample_path(call, sample, path.points)
    spent: defaultdict[tuple[str, UnlockPath], Spent] | None = (
        defaultdict(Spent) if cpu else None
    )
    results.best_rate = time_rounds(callers, timed, per_round, rounds, spent)
    results.spent = dict(spent or {})
    with _harness.tracing():
        for path in PATHS:
            for library, call in callers.items():
                results.peak_memory[library, path] = max(
                    _harness.traced_call(functools.partial(call, user, path.points))
                    for user in memory
                )
    if trace_users:
        from django.db import connection

        for path in PATHS:
            for library, call in callers.items():
                results.traces[library, path] = [
                    _trace.traced(
                        connection, functools.partial(call, user, path.points)
                    )
                    for user in traced
                ]
    return results


def check(
    results: Results, libraries: Sequence[str], users: int, report: _harness.Report
) -> None:
    """hero's outcomes (no SQL on (a)); pinax's rows at level indexes 0 and 1."""
    for hero in (lib for lib in libraries if lib.startswith("hero")):
        wrong = []
        for path in PATHS:
            for returned in results.samples[hero, path].returned:
                levels = tuple(outcome.level for outcome in returned)
                if levels != path.new_levels:
                    wrong.append(f"{hero}: {path.label} returned {returned!r}")
                    break
        if results.samples[hero, PATHS[0]].statements:
            wrong.append(f"{hero}: (a) awards nothing sent SQL")
        text = (
            f"{hero} outcomes in the sample: as expected; no SQL on (a) awards nothing"
        )
        report.check(wrong, text)
    if "pinax" in libraries:
        from django.db.models import Count
        from pinax.badges.models import BadgeAward

        awards = BadgeAward.objects.values_list("level").annotate(n=Count("id"))
        rows = dict(awards.values_list("level", "n"))
        text = f"pinax BadgeAward rows by level index: {rows}"
        wanted = {0: users, 1: users}
        report.check([] if rows == wanted else [f"{text}, wanted {wanted}"], text)


def format_count(sample: Sample | None) -> str:
    if sample is None:
        return "-"

    def number(value: float) -> str:
        return f"{value:g}" if value == int(value) else f"{value:.2f}"

    text = number(sample.statements)
    if sample.transaction_control:
        text += f" ({number(sample.transaction_control)} tx)"
    return text


def memory(peak: int | None) -> str:
    return _harness.cell(None if peak is None else peak / 1024, "{:,.1f} KB")


def print_results(
    results: Results, show_queries: bool, pair: Sequence[str] = LIBRARIES
) -> None:
    first, second = pair
    headers = ["path", f"{first} calls/s", f"{second} calls/s", f"{first}/{second}"]
    headers += [f"{lib} {what}" for what in ("SQL/call", "peak") for lib in pair]
    rows = []
    for path in PATHS:
        keys = [(library, path) for library in pair]
        hero, pinax = (results.best_rate.get(key) for key in keys)
        rows.append(
            [
                path.label,
                _harness.cell(hero),
                _harness.cell(pinax),
                f"{hero / pinax:.2f}" if hero and pinax else "-",
                *(format_count(results.samples.get(key)) for key in keys),
                *(memory(results.peak_memory.get(key)) for key in keys),
            ]
        )
    _harness.print_table(headers, rows, left=1)
    print(
        "\nSQL/call: statements in Django's query log per call (sample average); "
        "'(n tx)': of them BEGIN, SAVEPOINT, RELEASE, COMMIT or ROLLBACK.\npeak: "
        f"Python allocations of one call (tracemalloc, the largest over {MEMORY_USERS} "
        "users, after the timed rounds; not the driver's or SQLite's in C). Peak "
        f"RSS of the process, both libraries: {_harness.mb(_harness.lifetime_peak_rss())}"
    )
    for (library, path), sample in results.samples.items() if show_queries else ():
        print(f"\n{library} {path.label}: returned {sample.returned[0]!r}")
        print(*(f"    {sql}" for sql in sample.first_sql or ["(no SQL)"]), sep="\n")


def per_call(values: Sequence[int]) -> str:
    """Counts per call: the count when every call had it, else mean (min-max)."""
    if min(values) == max(values):
        return str(values[0])
    return f"{sum(values) / len(values):.1f} ({min(values)}-{max(values)})"


def print_exchanges(results: Results, libraries: Sequence[str], path: str) -> None:
    """Exchanges and statements per call, from the traces; the traces to ``path``."""
    headers = ["path"]
    headers += [
        f"{lib} {what}" for what in ("exchanges", "statements") for lib in libraries
    ]
    rows = []
    for unlock_path in PATHS:
        traces = [results.traces[library, unlock_path] for library in libraries]
        rows.append(
            [
                unlock_path.label,
                *(per_call([t.exchanges for t in calls]) for calls in traces),
                *(per_call([t.statements for t in calls]) for calls in traces),
            ]
        )
    print(
        f"\nExchanges with the server per call (libpq's trace of {TRACE_USERS} users)"
    )
    _harness.print_table(headers, rows, left=1)
    print(
        "exchange: the client sends, then waits for the server's answer (a query "
        "of several\nstatements, or a pipeline, sends several in one); statements: "
        f"those the server ran. Traces of\nthe first user of each: {path}"
    )
    with open(path, "w") as file:
        for (library, unlock_path), calls in results.traces.items():
            first = calls[0]
            title = (
                f"{library} {unlock_path.label}: {first.exchanges} exchanges, "
                f"{first.statements} statements"
            )
            file.write(first.annotated(title) + "\n")


def print_spent(results: Results, libraries: Sequence[str]) -> None:
    """Where the timed calls' time went, per call, each library side by side."""
    headers = ["path"]
    parts = ("wall", "process CPU", "server CPU", "waiting")
    headers += [f"{lib} {part}" for part in parts for lib in libraries]
    rows = []
    for path in PATHS:
        spent = [results.spent[library, path] for library in libraries]
        cells = {
            "wall": [s.per_call(s.wall) for s in spent],
            "process CPU": [s.per_call(s.process) for s in spent],
            "server CPU": [s.per_call(s.server) for s in spent],
            "waiting": [
                s.per_call(s.wall - s.process - (s.server or 0)) for s in spent
            ],
        }
        rows.append([path.label, *(cell for part in parts for cell in cells[part])])
    print("\nWhere a call's time goes (microseconds per call, every timed pass)")
    _harness.print_table(headers, rows, left=1)
    print(
        "process CPU: this thread's (Python, the driver, SQLite's work); server "
        "CPU: the PostgreSQL\nserver process of the connection, where it runs on "
        "this machine ('-' elsewhere and on SQLite);\nwaiting: the rest (the "
        "network, the disk's flushes, other processes on the cores)."
    )
    print_written(results, libraries)


def print_written(results: Results, libraries: Sequence[str]) -> None:
    """What the timed calls wrote, per call, each library side by side."""
    rows = []
    for path in PATHS:
        written = [results.spent[library, path].kb_per_call() for library in libraries]
        ratio = "-"
        if len(written) == 2 and written[0] is not None and written[1]:
            ratio = f"{written[0] / written[1]:.1f}"
        cells = [_harness.cell(kb, "{:,.2f}") for kb in written]
        rows.append([path.label, *cells, *([ratio] if len(libraries) == 2 else [])])
    headers = ["path", *(f"{lib} KB written" for lib in libraries)]
    if len(libraries) == 2:
        headers.append(f"{libraries[0]}/{libraries[1]}")
    print("\nWhat a call writes (KB per call, every timed pass)")
    _harness.print_table(headers, rows, left=1)
    print(
        "SQLite: what this process wrote to its files (the journal or the WAL, "
        "and the database at\ncheckpoints: SQLite's wal_autocheckpoint, in the "
        "header); PostgreSQL: the WAL the server\ngenerated (the whole server's); "
        "'-' on MariaDB and MySQL, or where /proc is missing."
    )


def headline(
    results: Results, libraries: Sequence[str], report: _harness.Report
) -> None:
    """hero against pinax per path, the memory figures, and the JSON."""
    peak_rss, peaks = _harness.lifetime_peak_rss(), results.peak_memory
    report.figures["paths"] = {
        path.key: {
            "label": path.label,
            "rate": {lib: results.best_rate[lib, path] for lib in libraries},
            "peak_kb": {lib: peaks[lib, path] / 1024 for lib in libraries},
        }
        for path in PATHS
    }
    report.figures["peak_rss_mb"] = peak_rss / _harness.MB
    for path in PATHS if len(libraries) == 2 else ():
        first, second = (results.best_rate[library, path] for library in libraries)
        if libraries == SEALING_PAIR:
            # What sealing costs: the time per call it adds, as a share.
            cost = second / first - 1
            report.figures.setdefault("sealing_cost", {})[path.key] = cost
            report.figure(
                f"{path.label}: sealing's cost (time per call, hero / hero-unsealed - 1)",
                f"{cost:+.1%} ({first:,.0f} / {second:,.0f} calls/s)",
                "<= +10%" if path.key in "bc" else "",
                cost <= 0.10 if path.key in "bc" else None,
            )
            continue
        report.figure(
            f"{path.label}: hero/pinax calls/s",
            f"{first / second:.2f} ({first:,.0f} / {second:,.0f})",
        )
    report.figure(
        f"(b) first award: peak Python memory of one call, {' / '.join(libraries)}",
        " / ".join(memory(peaks[lib, PATHS[1]]) for lib in libraries),
    )
    report.figure("peak RSS of the process (both libraries)", _harness.mb(peak_rss))
    if results.spent:
        report.figures["spent_us"] = {
            path.key: {
                lib: {
                    part: None if value is None else value / spent.calls / 1000
                    for part, value in (
                        ("wall", spent.wall),
                        ("process", spent.process),
                        ("server", spent.server),
                    )
                }
                for lib in libraries
                if (spent := results.spent[lib, path]).calls
            }
            for path in PATHS
        }
        report.figures["written_kb"] = {
            path.key: {
                lib: results.spent[lib, path].kb_per_call()
                for lib in libraries
                if results.spent[lib, path].calls
            }
            for path in PATHS
        }
    if not results.traces:
        return
    report.figures["exchanges"] = {
        path.key: {
            lib: max(t.exchanges for t in results.traces[lib, path])
            for lib in libraries
        }
        for path in PATHS
    }
    for path in PATHS[1:3]:  # the awards: (b) and (c)
        most = report.figures["exchanges"][path.key]
        report.figure(
            f"{path.label}: exchanges with the server per call, {' / '.join(libraries)}",
            " / ".join(str(most[lib]) for lib in libraries),
            f"hero <= {EXCHANGES_GOAL}" if "hero" in libraries else "",
            most["hero"] <= EXCHANGES_GOAL if "hero" in libraries else None,
        )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    libraries = (options.only,) if options.only else LIBRARIES
    if options.sealing_cost:
        libraries = SEALING_PAIR
    report = _harness.Report("unlock")
    report.figures["database"] = options.database
    report.figures["journal"] = options.journal
    report.figures["projections"] = options.projections
    total_users = WARMUP_USERS + SAMPLE_USERS + MEMORY_USERS
    total_users += options.users * options.repeat
    trace_users = TRACE_USERS if options.trace else 0
    total_users += trace_users
    database_run = _harness.run_database(
        options.database,
        "unlock",
        journal=options.journal,
        autocheckpoint=options.wal_autocheckpoint,
    )
    with database_run as database:
        callers = setup(
            database,
            tuple(lib for lib in libraries if lib in LIBRARIES),
            options.projections,
        )
        _harness.print_header(
            f"{options.users} users per round in turns of {PATHS[1].turn} calls, best of "
            f"{options.repeat} round{'' if options.repeat == 1 else 's'}, "
            f"{SAMPLE_USERS} users for the SQL counts, {WARMUP_USERS} for the "
            f"warm-up, {MEMORY_USERS} for the memory pass; hero's projections "
            f"{options.projections}",
            versions=[f"pinax-badges {_harness.package_version('pinax-badges')}"],
        )
        names = [f"bench-{number:07d}" for number in range(total_users)]
        users = _harness.create_users(names)
        if options.sealing_cost:
            twins = _harness.create_users([f"twin-{name}" for name in names])
            callers = sealing_calls(callers["hero"], users, twins)
        results = measure(
            callers,
            users,
            options.users,
            options.repeat,
            trace_users,
            cpu=options.cpu,
        )
        print_results(
            results,
            options.show_queries,
            libraries if len(libraries) == 2 else LIBRARIES,
        )
        if options.cpu:
            print_spent(results, libraries)
        if options.trace:
            print_exchanges(results, libraries, options.trace)
        check(results, libraries, total_users, report)
        headline(results, libraries, report)
        return report.finish(options.summary)


if __name__ == "__main__":
    sys.exit(main())
