"""Audit benchmark: the cost of reading one user's history as the store grows.

hero reads a user's history from the event store itself: one indexed query for
the user's aggregates (``originator_id IN (...)``), whose cost should follow
that user's events, not the size of the store. This measures it, in one run on
one SQLite file database:

1. Builds an event store of a hundredth of ``--events`` (10,000 by default),
   then grows it to a tenth (100,000) and to all of them (1,000,000); the store
   is the rebuild benchmark's (``_store.py``): one user per 10 events, each
   user holding four achievements reached through 4 ``Unlocked`` and 6
   ``LevelUpgraded`` events, written through hero's aggregates and recorder
   with ``HERO_PROJECTIONS = "async"`` (no read table). The row count of
   ``hero_stored_event`` is checked against each size.

2. After each size is built, the database file is copied (WAL checkpointed
   first), so that the three sizes can be measured in turn: ``--passes``
   passes (default 3), each going through the sizes (in the opposite order on
   every other pass), so that the machine's noise falls on every size alike.

3. A measurement of one size is a fresh child process
   (``audit.py --measure-audit DBFILE --size N``). After one untimed warm-up
   call of each kind per user, it times two ways of auditing one user:

   ``history()``    ``hero.achievements.history(user)``, the Python API: a check
                    of the user, then ``hero.audit.history(str(user.pk))``,
                    which reads the user's events and turns them into
                    ``HistoryEntry`` objects;
   ``hero_audit``   ``call_command("hero_audit", username, stdout=StringIO())``,
                    the management command, table output: it looks the user
                    up, reads the history and the levels held (a second read
                    of the store) and formats them.

   for three users: the first user of the store (its events are the oldest),
   the user in the middle and the newest user at that size. Each call is timed
   on its own (``time.perf_counter``, garbage collection paused during a round
   of calls): ``--repeat`` calls per user and kind, in 5 rounds that go through
   the users and kinds in turn. A third series, ``history(), spread``, audits
   ``--repeat`` other users spread evenly over the whole store, one call each,
   none of them read before in that process: the index pages they need are
   not yet in SQLite's own page cache (the OS's file cache does hold them,
   the store having just been written). A size's figures are microseconds per
   call, best and median over all its timed calls, all passes pooled.

4. Memory, in the same child, apart from the timing: the kernel's peak-RSS
   mark is reset (``/proc/self/clear_refs``) before the timed calls, and the
   process's peak RSS (``VmHWM``) above its RSS just before is reported; then
   one more call of each kind per user runs under ``tracemalloc`` (untimed),
   reporting the largest peak of Python allocations of one call. The largest
   figure over the passes is kept.

5. Checks, in every pass, on every audited user (the spread users included):
   ``history()`` has exactly the 10 entries the store was built with (4
   ``unlocked``, 6 ``upgraded``), in order of position, ending at the levels
   the user was given, and the command's output names the user, has one line
   per entry and lists those levels. A failed check makes the exit status 1.

The goal: the median cost per call at the largest size within 25% of the
smallest size's, for each series.

Run it from the repository's root::

    .venv/bin/python benchmarks/audit.py [--events 1000000] [--repeat 200]
        [--passes 3] [--keep DIR] [--summary FILE.json]

``--events`` must be a multiple of 1,000 (the first size is a hundredth of it);
``--keep DIR`` builds the databases in DIR (``audit.sqlite3``, the largest, and
a copy per smaller size, ``audit-N.sqlite3``) and leaves them there.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
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
    current_rss,
    load_average,
    machine_line,
    mb,
    peak_rss,
    print_table,
    reset_peak_rss,
    versions_line,
)

DB_NAME = "audit.sqlite3"
RESULT_MARK = "AUDIT-RESULT "
ROUNDS = 5
#: The timed kinds of call, in the order of the table.
KINDS = ("history", "hero_audit", "spread")
LABELS = {
    "history": "history()",
    "hero_audit": "hero_audit",
    "spread": "history(), spread",
}
#: How far the median at the largest size may stray from the smallest size's.
FLAT_WITHIN = 0.25


# -- options ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the audit of one user as hero's event store grows.",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=1_000_000,
        help="events in the store at the largest size (default 1000000; a multiple "
        "of 1000: the sizes are a hundredth, a tenth and all of it)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=200,
        help="timed calls per user and kind in a pass, and users of the spread "
        "series (default 200)",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=3,
        help="passes over the sizes; every size's calls are pooled (default 3)",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help=f"build the database as DIR/{DB_NAME} and keep it (default: a temporary "
        "directory, removed at the end)",
    )
    parser.add_argument(
        "--summary",
        metavar="FILE",
        help="also write the headline figures as JSON to FILE (for run_all.py)",
    )
    # One size's measurement in this process (what the parent runs as a child).
    parser.add_argument("--measure-audit", metavar="DBFILE", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.measure_audit is None and (
        options.events < 1000 or options.events % 1000
    ):
        parser.error("--events must be a positive multiple of 1000")
    if options.repeat < ROUNDS:
        parser.error(f"--repeat must be at least {ROUNDS}")
    if options.passes < 1:
        parser.error("--passes must be at least 1")
    return options


# -- one size's measurement (child process) --------------------------------


def audited_indexes(users: int) -> list[int]:
    """The users audited at a size of ``users`` users: the first, the middle
    one and the newest."""
    return sorted({0, users // 2, users - 1})


def spread_indexes(users: int, count: int) -> list[int]:
    """Up to ``count`` users spread evenly over the store, none of the audited
    ones (fewer when the store has fewer)."""
    count = min(count, users)
    audited = set(audited_indexes(users))
    return sorted({index * users // count for index in range(count)} - audited)


def check_user(user: Any, index: int, entries: Sequence[Any], output: str) -> str:
    """Problems with one user's audit ("" when none): the entries the store
    was built with, in order, and the command's output listing them."""
    from _rebuild_achievements import EVENTS_PER_USER, awards

    expected_levels = dict(awards(index))
    kinds = Counter(entry.kind for entry in entries)
    final: dict[str, int] = {}
    for entry in entries:
        final[entry.achievement_id] = entry.level
    problems = []
    if len(entries) != EVENTS_PER_USER:
        problems.append(f"{len(entries)} entries, not {EVENTS_PER_USER}")
    unlocked = len(expected_levels)
    if kinds != {"unlocked": unlocked, "upgraded": EVENTS_PER_USER - unlocked}:
        problems.append(f"entries by kind {dict(kinds)}")
    positions = [entry.position for entry in entries]
    if positions != sorted(positions):
        problems.append("entries out of order")
    if final != expected_levels:
        problems.append(f"levels {final}, not {expected_levels}")
    lines = output.splitlines()
    listed = sum(1 for line in lines if " unlocked " in line or " upgraded " in line)
    if listed != EVENTS_PER_USER:
        problems.append(f"hero_audit listed {listed} entries")
    for achievement_id, level in expected_levels.items():
        if not any(
            line.startswith(f"  {achievement_id}: level {level} ") for line in lines
        ):
            problems.append(f"hero_audit does not say {achievement_id} is at {level}")
    if not lines or not lines[0].startswith(f"History of {user.get_username()} "):
        problems.append("hero_audit's first line does not name the user")
    return "; ".join(problems)


def time_calls(call: Callable[[], object], count: int, into: list[float]) -> None:
    """Time ``count`` calls one by one, garbage collection paused."""
    gc.collect()
    gc.disable()
    try:
        for _ in range(count):
            started = time.perf_counter()
            call()
            into.append(time.perf_counter() - started)
    finally:
        gc.enable()


def traced_peak(call: Callable[[], object]) -> int:
    """Peak of Python allocations during one call, above what was allocated
    before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def measure_one(path: str, size: int, repeat: int) -> dict[str, Any]:
    """Audit users of the store at ``path`` (``size`` events); return the
    times of the calls, their memory and the checks."""
    from _rebuild_achievements import EVENTS_PER_USER

    _store.configure_django(path, "audit-benchmark")
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    import hero

    users_in_store = size // EVENTS_PER_USER
    user_model = get_user_model()

    def load(indexes: Sequence[int]) -> list[tuple[int, Any]]:
        names = {_store.username(index): index for index in indexes}
        found = {
            user.get_username(): user
            for user in user_model.objects.filter(username__in=list(names))
        }
        if len(found) != len(names):
            raise SystemExit(f"{len(names) - len(found)} audited users are missing")
        return [(names[name], found[name]) for name in sorted(names)]

    audited = load(audited_indexes(users_in_store))
    spread = load(spread_indexes(users_in_store, repeat))

    def audit_command(user: Any) -> str:
        out = io.StringIO()
        call_command("hero_audit", user.get_username(), stdout=out)
        return out.getvalue()

    # Warm-up, and the entries that are checked.
    problems = []
    for index, user in audited:
        found = check_user(
            user, index, hero.achievements.history(user), audit_command(user)
        )
        if found:
            problems.append(f"user {index}: {found}")

    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    per_user: dict[str, list[float]] = {}
    rss_before = current_rss()
    reset = reset_peak_rss()
    per_round = repeat // ROUNDS
    for _ in range(ROUNDS):
        for index, user in audited:
            for kind, call in (
                ("history", lambda user=user: hero.achievements.history(user)),
                ("hero_audit", lambda user=user: audit_command(user)),
            ):
                mine = per_user.setdefault(f"{kind} {index}", [])
                time_calls(call, per_round, mine)
                times[kind].extend(mine[-per_round:])
    # The spread users are read for the first time here, and checked after.
    spread_entries = []
    gc.collect()
    gc.disable()
    try:
        for _, user in spread:
            started = time.perf_counter()
            entries = hero.achievements.history(user)
            times["spread"].append(time.perf_counter() - started)
            spread_entries.append(entries)
    finally:
        gc.enable()
    rss_growth = peak_rss(reset) - rss_before
    for (index, user), entries in zip(spread, spread_entries, strict=True):
        found = check_user(user, index, entries, audit_command(user))
        if found:
            problems.append(f"user {index}: {found}")

    traced = {
        "history": max(
            traced_peak(lambda user=user: hero.achievements.history(user))
            for _, user in audited
        ),
        "hero_audit": max(
            traced_peak(lambda user=user: audit_command(user)) for _, user in audited
        ),
    }
    return {
        "size": size,
        "users": [index for index, _ in audited],
        "load_average": load_average(),
        "spread_users": len(spread),
        "times": times,
        "per_user_median": {
            key: statistics.median(values) for key, values in per_user.items()
        },
        "rss_growth": rss_growth,
        "peak_is_reset": reset,
        "traced": traced,
        "problems": problems,
        "checked_users": len(audited) + len(spread),
    }


def run_child(path: str, size: int, repeat: int) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure-audit",
        path,
        "--size",
        str(size),
        "--repeat",
        str(repeat),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    raise SystemExit(
        f"the audit at {size} events failed (exit {done.returncode}):\n"
        f"{done.stdout}{done.stderr}"
    )


# -- results ---------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    path: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def times(self, kind: str) -> list[float]:
        return [seconds for run in self.runs for seconds in run["times"][kind]]

    def best(self, kind: str) -> float | None:
        times = self.times(kind)
        return min(times) if times else None

    def median(self, kind: str) -> float | None:
        times = self.times(kind)
        return statistics.median(times) if times else None

    def rss_growth(self) -> int:
        return max(int(run["rss_growth"]) for run in self.runs)

    def traced(self, kind: str) -> int:
        return max(int(run["traced"][kind]) for run in self.runs)

    def problems(self) -> list[str]:
        return sorted({problem for run in self.runs for problem in run["problems"]})


def microseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.0f}"


def first_measured(results: Sequence[SizeResult], kind: str) -> SizeResult | None:
    """The smallest size with calls of this kind (a tiny store may have no
    users to spread the audits over)."""
    return next((r for r in results if r.median(kind) is not None), None)


def ratio_to_first(
    results: Sequence[SizeResult], result: SizeResult, kind: str
) -> float | None:
    first = first_measured(results, kind)
    here = result.median(kind)
    if first is None or here is None:
        return None
    base = first.median(kind)
    assert base is not None
    return here / base


def print_header(path: str, options: argparse.Namespace) -> None:
    print(machine_line())
    print(versions_line())
    print(
        f"Database: {path} (journal_mode=WAL, synchronous=NORMAL); "
        f"--events {options.events:,}, --repeat {options.repeat} "
        f"({ROUNDS} rounds of {options.repeat // ROUNDS} calls per user and kind), "
        f"--passes {options.passes}"
    )
    print()


def print_results(results: Sequence[SizeResult]) -> None:
    headers = ["events"]
    for kind in KINDS:
        headers += [
            f"{LABELS[kind]} best µs",
            "median µs",
            "x first",
        ]
    rows = []
    for result in results:
        row = [f"{result.size:,}"]
        for kind in KINDS:
            ratio = ratio_to_first(results, result, kind)
            row += [
                microseconds(result.best(kind)),
                microseconds(result.median(kind)),
                "-" if ratio is None else f"{ratio:.2f}",
            ]
        rows.append(row)
    print_table(headers, rows)
    print(
        "\nµs: microseconds per call, best and median over every timed call of\n"
        "the size, all passes (3 users; for the spread series, one call for each\n"
        "of the users spread over the store, in each pass). x first: the median\n"
        "against the first size's."
    )
    print()
    headers = [
        "events",
        "peak RSS growth",
        "history() tracemalloc peak",
        "hero_audit tracemalloc peak",
    ]
    rows = [
        [
            f"{result.size:,}",
            mb(result.rss_growth()),
            f"{result.traced('history') / 1024:,.0f} KB",
            f"{result.traced('hero_audit') / 1024:,.0f} KB",
        ]
        for result in results
    ]
    print_table(headers, rows)
    print(
        "\npeak RSS growth: the audit process's peak RSS (VmHWM) during all the\n"
        "timed calls, above its RSS just before them. tracemalloc peak: Python\n"
        "allocations during one call (the largest over the users; untimed).\n"
        "Both: the largest over the passes."
    )


def goals(results: Sequence[SizeResult]) -> dict[str, float | None]:
    """Each kind's median at the largest size against its smallest size's."""
    return {kind: ratio_to_first(results, results[-1], kind) for kind in KINDS}


def print_goals(results: Sequence[SizeResult]) -> None:
    large = results[-1]
    print()
    for kind, ratio in goals(results).items():
        first = first_measured(results, kind)
        if ratio is None or first is None or first is large:
            print(f"Goal, {LABELS[kind]}: not measured at two sizes")
            continue
        met = abs(ratio - 1) <= FLAT_WITHIN
        print(
            f"Goal, {LABELS[kind]}: median at {large.size:,} events "
            f"{ratio:.2f}x the median at {first.size:,} "
            f"(goal: within ±{FLAT_WITHIN:.0%}): {'met' if met else 'NOT met'}"
        )


def _micro(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e6


def write_summary(path: str, results: Sequence[SizeResult], checked: bool) -> None:
    summary = {
        "benchmark": "audit",
        "sizes": [result.size for result in results],
        "median_us": {
            kind: [_micro(result.median(kind)) for result in results] for kind in KINDS
        },
        "best_us": {
            kind: [_micro(result.best(kind)) for result in results] for kind in KINDS
        },
        "ratio_largest_to_smallest": goals(results),
        "flat_within": FLAT_WITHIN,
        "peak_rss_growth_mb": [result.rss_growth() / MB for result in results],
        "tracemalloc_peak_kb": {
            kind: [result.traced(kind) / 1024 for result in results]
            for kind in ("history", "hero_audit")
        },
        "checks_passed": checked,
    }
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")


# -- main ------------------------------------------------------------------


def build_sizes(path: str, options: argparse.Namespace) -> list[SizeResult]:
    """Grow the store at ``path`` through the sizes, copying the file at each
    size but the last; return the sizes and their files."""
    from _rebuild_achievements import EVENTS_PER_USER

    sizes = (options.events // 100, options.events // 10, options.events)
    results: list[SizeResult] = []
    users = 0
    for size in sizes:
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
        _store.settle(path)
        copy = path
        if size != sizes[-1]:
            copy = str(Path(path).with_name(f"audit-{size}.sqlite3"))
            shutil.copyfile(path, copy)
        results.append(SizeResult(size, copy))
    return results


def measure_sizes(results: Sequence[SizeResult], options: argparse.Namespace) -> None:
    for number in range(options.passes):
        order = results if number % 2 == 0 else results[::-1]
        for result in order:
            _store.settle(result.path)
            run = run_child(result.path, result.size, options.repeat)
            result.runs.append(run)
            medians = ", ".join(
                f"{key} {value * 1e6:,.0f}"
                for key, value in run["per_user_median"].items()
            )
            print(
                f"  pass {number + 1}, {result.size:,} events: median µs per call, "
                f"by kind and user number: {medians} "
                f"(load average {run['load_average']})",
                flush=True,
            )


def print_checks(results: Sequence[SizeResult]) -> bool:
    from _rebuild_achievements import EVENTS_PER_USER

    checked = True
    for result in results:
        problems = result.problems()
        if problems:
            checked = False
            for problem in problems:
                print(f"CHECK FAILED at {result.size:,} events: {problem}")
            continue
        users = result.runs[0]["checked_users"]
        print(
            f"Checked: {result.size:,} events: {users} user{'' if users == 1 else 's'} "
            f"audited in each of {len(result.runs)} pass"
            f"{'' if len(result.runs) == 1 else 'es'}, each with its "
            f"{EVENTS_PER_USER} entries in order and its levels, in history() and "
            "in hero_audit's output"
        )
    return checked


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.measure_audit:
        result = measure_one(options.measure_audit, options.size, options.repeat)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0

    started = time.perf_counter()
    with _store.database_directory(options.keep, DB_NAME, "hero-audit-bench-") as path:
        _store.configure_django(path, "audit-benchmark")
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print_header(path, options)
        results = build_sizes(path, options)
        print(f"Measuring: {options.passes} passes over the sizes", flush=True)
        measure_sizes(results, options)
        print()
        print_results(results)
        print_goals(results)
        print()
        checked = print_checks(results)
        if options.summary:
            write_summary(options.summary, results, checked)
        print(
            f"\nWhole run {time.perf_counter() - started:.0f} s; "
            f"load average at the end {load_average()}"
        )
        if options.keep:
            print(f"Databases kept in {Path(path).parent}")
    return 0 if checked else 1


if __name__ == "__main__":
    sys.exit(main())
