"""Audit benchmark: the cost of reading one user's history as the store grows.

Times ``history()`` and ``hero_audit`` for a few users of the store of
``_store.py`` at a hundredth, a tenth and all of ``--events`` events, each size
in a fresh child process, with the memory of a call, and checks every audited
user's entries. The goal: flat medians. ``README.md`` has the method.
"""

from __future__ import annotations

import argparse
import functools
import io
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness
import _store

ROUNDS = 5
#: The timed kinds of call, in the order of the table.
KINDS = ("history", "hero_audit", "spread")
LABELS = {
    "history": "history()",
    "hero_audit": "hero_audit",
    "spread": "history(), spread",
}
#: The kinds of call whose memory is traced.
TRACED = ("history", "hero_audit")
#: How far the median at the largest size may stray from the smallest size's.
FLAT_WITHIN = 0.25


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _harness.Options(
        "Time the audit of one user as hero's event store grows.",
        repeat=(200, "timed calls per user and kind in a pass, and spread users"),
        store=("audit", 1000),
    )
    parser.add("--passes", 3, "passes over the sizes; every size's calls are pooled")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    options = parser.parse(argv, "passes")
    if options.repeat < ROUNDS:
        parser.error(f"--repeat must be at least {ROUNDS}")
    return options


def audited_indexes(users: int) -> list[int]:
    """The users audited at a size: the first, the middle one and the newest."""
    return sorted({0, users // 2, users - 1})


def spread_indexes(users: int, count: int) -> list[int]:
    """Up to ``count`` users spread evenly over the store, not the audited ones."""
    count = min(count, users)
    audited = set(audited_indexes(users))
    return sorted({index * users // count for index in range(count)} - audited)


def check_user(user: Any, index: int, entries: Sequence[Any], output: str) -> str:
    """Problems with one user's audit: its entries, and the command's output."""
    levels = dict(_store.awards(index))
    count = _store.EVENTS_PER_USER
    kinds = dict(Counter(entry.kind for entry in entries))
    positions = [entry.position for entry in entries]
    final = {entry.achievement_id: entry.level for entry in entries}
    lines = output.splitlines()
    listed = sum(1 for line in lines if " unlocked " in line or " upgraded " in line)
    problems = []
    if len(entries) != count:
        problems.append(f"{len(entries)} entries, not {count}")
    if kinds != {"unlocked": len(levels), "upgraded": count - len(levels)}:
        problems.append(f"entries by kind {kinds}")
    if positions != sorted(positions):
        problems.append("entries out of order")
    if final != levels:
        problems.append(f"levels {final}, not {levels}")
    if listed != count:
        problems.append(f"hero_audit listed {listed} entries")
    for achievement_id, level in levels.items():
        if not any(
            line.startswith(f"  {achievement_id}: level {level} ") for line in lines
        ):
            problems.append(f"hero_audit does not say {achievement_id} is at {level}")
    if not lines or not lines[0].startswith(f"History of {user.get_username()} "):
        problems.append("hero_audit's first line does not name the user")
    return "; ".join(problems)


def measure_one(path: str, size: int, repeat: int) -> dict[str, Any]:
    """Time the audits of one size's store (the child); with memory and checks."""
    _store.configure_django(path, "audit")
    from django.core.management import call_command

    import hero

    def load(indexes: Sequence[int]) -> list[tuple[int, Any]]:
        users = _harness.users_named([_store.username(index) for index in indexes])
        return list(zip(indexes, users, strict=True))

    users_in_store = size // _store.EVENTS_PER_USER
    audited = load(audited_indexes(users_in_store))
    spread = load(spread_indexes(users_in_store, repeat))

    def audit_command(user: Any) -> str:
        out = io.StringIO()
        call_command("hero_audit", user.get_username(), stdout=out)
        return out.getvalue()

    def check(index: int, user: Any, entries: Sequence[Any]) -> None:
        found = check_user(user, index, entries, audit_command(user))
        if found:
            problems.append(f"user {index}: {found}")

    # Warm-up, and the entries that are checked.
    problems: list[str] = []
    for index, user in audited:
        check(index, user, hero.achievements.history(user))

    calls = {"history": hero.achievements.history, "hero_audit": audit_command}
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    per_user: dict[str, list[float]] = {}
    memory = _harness.PeakRss()
    per_round = repeat // ROUNDS
    for _ in range(ROUNDS):
        for index, user in audited:
            for kind, call in calls.items():
                mine = per_user.setdefault(f"{kind} {index}", [])
                with _harness.gc_paused():  # each call timed on its own
                    for _ in range(per_round):
                        started = time.perf_counter()
                        call(user)
                        mine.append(time.perf_counter() - started)
                times[kind].extend(mine[-per_round:])
    # The spread users are read for the first time here, and checked after.
    spread_entries = []
    with _harness.gc_paused():
        for _, user in spread:
            started = time.perf_counter()
            entries = hero.achievements.history(user)
            times["spread"].append(time.perf_counter() - started)
            spread_entries.append(entries)
    rss_growth = memory.growth()
    for (index, user), entries in zip(spread, spread_entries, strict=True):
        check(index, user, entries)

    return {
        "load_average": _harness.load_average(),
        "times": times,
        "per_user_median": {
            key: statistics.median(values) for key, values in per_user.items()
        },
        "rss_growth": rss_growth,
        "traced": {
            kind: max(
                _harness.traced_peak(functools.partial(call, user))
                for _, user in audited
            )
            for kind, call in calls.items()
        },
        "problems": problems,
        "checked_users": len(audited) + len(spread),
    }


@dataclass
class SizeResult:
    """One size's measurements, all passes pooled."""

    size: int
    path: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def micros(self, kind: str, pick: Callable[[list[float]], float]) -> float | None:
        """``pick`` (min, median) of the microseconds per call of this kind."""
        times = [seconds * 1e6 for run in self.runs for seconds in run["times"][kind]]
        return pick(times) if times else None

    def most(self, key: str, kind: str = "") -> int:
        """The largest of the passes' memory figures."""
        return max(int(run[key][kind] if kind else run[key]) for run in self.runs)


def medians(results: Sequence[SizeResult], kind: str) -> list[float | None]:
    return [result.micros(kind, statistics.median) for result in results]


def ratios(results: Sequence[SizeResult], kind: str) -> list[float | None]:
    """Each size's median against the smallest size's with calls of this kind
    (a tiny store may have no users to spread the audits over)."""
    values = medians(results, kind)
    base = next((value for value in values if value is not None), None)
    return [None if base is None or m is None else m / base for m in values]


def print_results(results: Sequence[SizeResult]) -> None:
    headers = ["events"]
    rows: list[list[str]] = [[f"{result.size:,}"] for result in results]
    for kind in KINDS:
        headers += [f"{LABELS[kind]} best µs", "median µs", "x first"]
        columns = (rows, results, medians(results, kind), ratios(results, kind))
        for row, result, median, ratio in zip(*columns, strict=True):
            row += [_harness.cell(result.micros(kind, min)), _harness.cell(median)]
            row.append(_harness.cell(ratio, "{:.2f}"))
    _harness.print_table(headers, rows)
    print(
        "\nµs: microseconds per call, best and median over all the size's timed calls,\n"
        "all passes (3 users; spread: one call for each user spread over the store,\n"
        "in each pass). x first: the median against the first size's.\n"
    )
    headers = ["events", "peak RSS growth"]
    headers += [f"{LABELS[kind]} tracemalloc peak" for kind in TRACED]
    rows = [
        [f"{result.size:,}", _harness.mb(result.most("rss_growth"))]
        + [f"{result.most('traced', kind) / 1024:,.0f} KB" for kind in TRACED]
        for result in results
    ]
    _harness.print_table(headers, rows)
    print(
        "\npeak RSS growth: the process's peak RSS (VmHWM) during the timed calls\n"
        "above its RSS before; tracemalloc peak: Python allocations during one call\n"
        "(untimed; the largest over the users). Both: the largest over the passes."
    )


def headline(results: Sequence[SizeResult], report: _harness.Report) -> None:
    """The goals (flat medians), the memory at the largest size, and the JSON."""
    large = results[-1]
    report.figures.update(
        sizes=[result.size for result in results],
        median_us={kind: medians(results, kind) for kind in KINDS},
        best_us={kind: [r.micros(kind, min) for r in results] for kind in KINDS},
        ratio_largest_to_smallest={kind: ratios(results, kind)[-1] for kind in KINDS},
        flat_within=FLAT_WITHIN,
        peak_rss_growth_mb=[r.most("rss_growth") / _harness.MB for r in results],
        tracemalloc_peak_kb={
            kind: [r.most("traced", kind) / 1024 for r in results] for kind in TRACED
        },
    )
    goal = f"1 ± {FLAT_WITHIN:.2f}"
    for kind in KINDS:
        values, ratio = medians(results, kind), ratios(results, kind)[-1]
        first = next((n for n, value in enumerate(values) if value is not None), -1)
        if ratio is None or first in (-1, len(results) - 1):
            report.figure(f"audit, {LABELS[kind]}", "not measured at two sizes", goal)
            continue
        report.figure(
            f"audit, {LABELS[kind]}: median per call at {large.size:,} / at "
            f"{results[first].size:,} events",
            f"{ratio:.2f} ({values[-1]:,.0f} µs / {values[first]:,.0f} µs)",
            goal,
            abs(ratio - 1) <= FLAT_WITHIN,
        )
    report.figure(
        f"audit: peak Python memory of one call at {large.size:,} events, "
        "history() / hero_audit",
        " / ".join(f"{large.most('traced', kind) / 1024:.0f} KB" for kind in TRACED),
    )
    report.figure(
        "audit: peak RSS growth of the auditing process, by size",
        " / ".join(f"{r.most('rss_growth') / _harness.MB:.1f}" for r in results)
        + " MB",
    )


def check(results: Sequence[SizeResult], report: _harness.Report) -> None:
    """Every audited user's entries and levels, in every pass."""
    for result in results:
        problems = {problem for run in result.runs for problem in run["problems"]}
        users = result.runs[0]["checked_users"]
        passes = len(result.runs)
        report.check(
            [f"at {result.size:,} events: {problem}" for problem in sorted(problems)],
            f"{result.size:,} events: {users} user{'' if users == 1 else 's'} "
            f"audited in each of {passes} pass{'' if passes == 1 else 'es'}, each "
            f"with its {_store.EVENTS_PER_USER} entries in order and its levels, in "
            "history() and in hero_audit's output",
        )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.measure_audit:
        return _harness.report_to_parent(
            measure_one(options.measure_audit, options.size, options.repeat)
        )
    report = _harness.Report("audit")
    with _harness.run_database("sqlite", "audit", keep=options.keep) as database:
        path = database["NAME"]
        _store.configure_django(path, "audit", migrate=True)
        _harness.print_header(
            f"--events {options.events:,}, --repeat {options.repeat} "
            f"({ROUNDS} rounds of {options.repeat // ROUNDS} calls per user and "
            f"kind), --passes {options.passes}"
        )
        results = []
        sizes = (options.events // 100, options.events // 10, options.events)
        for size in sizes:  # a copy of the file at each size but the last
            _store.grow(size)
            _store.settle(path)
            copy = path
            if size != sizes[-1]:
                copy = str(Path(path).with_name(f"audit-{size}.sqlite3"))
                shutil.copyfile(path, copy)
            results.append(SizeResult(size, copy))
        print(f"Measuring: {options.passes} passes over the sizes", flush=True)
        for number in range(options.passes):
            for result in results if number % 2 == 0 else results[::-1]:
                _store.settle(result.path)
                run = _harness.run_child(
                    __file__,
                    *("--measure-audit", result.path, "--size", str(result.size)),
                    *("--repeat", str(options.repeat)),
                )
                result.runs.append(run)
                medians = ", ".join(
                    f"{key} {value * 1e6:,.0f}"
                    for key, value in run["per_user_median"].items()
                )
                print(
                    f"  pass {number + 1}, {result.size:,} events: median µs per "
                    f"call, by kind and user number: {medians} "
                    f"(load average {run['load_average']})",
                    flush=True,
                )
        print()
        print_results(results)
        headline(results, report)
        check(results, report)
        return report.finish(options.summary)


if __name__ == "__main__":
    sys.exit(main())
