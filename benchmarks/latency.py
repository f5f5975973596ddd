"""Latency benchmark: from an award's commit to its rows in the read tables,
with asynchronous projections on PostgreSQL.

With ``HERO_PROJECTIONS = "async"`` and a ``hero_project`` process running, this
process makes awards at random intervals, each in a transaction of its own, and
notes when each COMMIT returned; an observer process polls the holdings and the
ledger tables and notes when each award's row first appears there. The figures
are the delays between the two, median and 95th percentile. ``README.md`` has
the method.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import queue
import random
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

import _harness
import _projector

#: The goal: the median delay, in ms, from an award's commit to its row.
GOAL_MS = 50.0
#: The tables the observer watches, by the name the figures give them.
TABLES = {"holdings": "hero_achievement_unlocked", "ledger": "hero_ledger_entry"}
WARMUP_AWARDS = 5
#: The longest wait for the rows of the last award, in seconds.
SEEN_TIMEOUT = 30.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _harness.Options(
        "Time an award's way from its commit to the read tables, with "
        "HERO_PROJECTIONS = 'async' and hero_project running, on PostgreSQL."
    )
    text = "also write the headline figures and checks as JSON to FILE"
    parser.add("--summary", None, text + " (for run_all.py)", metavar="FILE")
    parser.add("--awards", 200, "awards timed, each to a new user")
    text = "mean ms between two awards (exponentially distributed: at random)"
    parser.add("--gap", 50.0, text)
    parser.add("--poll", 1.0, "ms the observer sleeps between two looks")
    parser.add("--seed", 1, "seed of the random gaps")
    text = "writers send no NOTIFY (HERO_NOTIFY = False): the worker polls alone"
    parser.add("--no-notify", False, text)
    text = "the PostgreSQL schema of the run, created and dropped"
    parser.add("--schema", "hero_latency_bench", text)
    text = (
        "then awards committed in one transaction, which the worker finds at once "
        "and catches up with (0: none)"
    )
    parser.add("--backlog", 1000, text)
    options = parser.parse(argv, "awards")
    if options.gap < 0 or options.poll < 0 or options.backlog < 0:
        parser.error("--gap, --poll and --backlog must be 0 or more")
    return options


def observer_main(
    database: dict[str, Any], schema: str, users: list[int], poll: float, sync: Any
) -> None:
    """Poll the read tables until each of ``users`` has its row in each, or
    ``stop`` is set; put when each row was first seen (``time.monotonic()``)."""
    stop, results = sync
    try:
        from psycopg import sql

        seen: dict[str, dict[int, float]] = {name: {} for name in TABLES}
        looks = 0
        with _harness.postgres_connect(database, database["NAME"]) as connection:
            connection.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))
            )
            statement = " UNION ALL ".join(
                f"SELECT '{name}', user_id FROM {table} WHERE user_id = ANY(%s)"
                for name, table in TABLES.items()
            )
            while not stop.is_set():
                pending = [[u for u in users if u not in seen[name]] for name in TABLES]
                if not any(pending):
                    break
                rows = connection.execute(statement, pending).fetchall()
                now = time.monotonic()
                looks += 1
                for name, user in rows:
                    seen[name].setdefault(user, now)
                time.sleep(poll)
        results.put({"seen": seen, "looks": looks})
    except BaseException:
        results.put({"error": traceback.format_exc()})


def award_at_random(users: Sequence[Any], gap: float, seed: int) -> dict[int, float]:
    """An award to each user, in a transaction of its own, after a random
    pause; when each COMMIT returned (``time.monotonic()``), by user pk: noted
    by the first callback of the commit, before any hero asked for (on
    PostgreSQL, linking the chain after the commit)."""
    import _points
    from django.db import transaction

    call = _points.hero_call()
    pauses = random.Random(seed)
    committed: dict[int, float] = {}

    def note(pk: int) -> None:
        committed[pk] = time.monotonic()

    for user in users:
        time.sleep(pauses.expovariate(1 / gap) if gap else 0)
        with transaction.atomic():
            transaction.on_commit(functools.partial(note, user.pk))
            call(user, 10)
    return committed


def catch_up(users: Sequence[Any], report: _harness.Report) -> None:
    """An award to each user, all in one transaction; from its COMMIT to the
    moment the worker has applied them all (the read models' positions
    looked at every few ms)."""
    import _points
    from django.db import transaction

    if not users:
        return
    call = _points.hero_call()
    with transaction.atomic():
        for user in users:
            call(user, 10)
    committed = time.monotonic()
    deadline = committed + SEEN_TIMEOUT
    while (left := _projector.behind()) and time.monotonic() < deadline:
        time.sleep(0.005)
    seconds = time.monotonic() - committed
    report.check(
        [f"hero_project did not catch up with the backlog: {left}"] if left else [],
        f"hero_project applied the backlog of {len(users):,} awards",
    )
    report.figures["backlog"] = {"events": len(users), "seconds": seconds}
    print(
        f"A backlog of {len(users):,} awards committed in one transaction: the "
        f"worker applied them\nall {seconds * 1000:,.0f} ms after the COMMIT "
        f"({len(users) / seconds:,.0f} events/s, both read models).\n"
    )
    report.figure(
        "backlog: events/s from its COMMIT to the last applied",
        f"{len(users) / seconds:,.0f} ({len(users):,} in {seconds:.2f} s)",
    )


def delays(committed: dict[int, float], seen: dict[int, float]) -> list[float]:
    """ms from each award's commit to its row, for the rows seen."""
    return sorted(1000 * (seen[u] - at) for u, at in committed.items() if u in seen)


def check(
    committed: dict[int, float],
    seen: dict[str, dict[int, float]],
    report: _harness.Report,
) -> None:
    """Every award seen in both tables; caught up; hero_verify."""

    missing = {name: len(set(committed) - set(rows)) for name, rows in seen.items()}
    problems = [
        f"{n} of {len(committed)} awards never appeared in the {name} table"
        for name, n in missing.items()
        if n
    ]
    report.check(
        problems,
        f"each of the {len(committed)} awards appeared in the holdings and the ledger",
    )
    left = _projector.wait_caught_up()
    report.check(
        [f"hero_project still behind the store: {left}"] if left else [],
        "hero_project caught up with the store",
    )
    report.check_hero_verify()


def print_figures(
    committed: dict[int, float],
    found: dict[str, Any],
    options: argparse.Namespace,
    report: _harness.Report,
) -> None:
    """The delays' table, the goal for each table, and the JSON."""
    rows, figures = [], {}
    for name in TABLES:
        ms = delays(committed, found["seen"][name])
        if not ms:
            continue
        p95 = statistics.quantiles(ms, n=20)[-1] if len(ms) > 1 else ms[-1]
        figures[name] = {
            "seen": len(ms),
            "median_ms": statistics.median(ms),
            "p95_ms": p95,
            "min_ms": ms[0],
            "max_ms": ms[-1],
        }
        rows.append(
            [
                name,
                f"{len(ms):,}",
                *(f"{v:.1f} ms" for v in list(figures[name].values())[1:]),
            ]
        )
    print(f"From an award's COMMIT to its row ({len(committed)} awards)")
    _harness.print_table(
        ["table", "awards", "median", "p95", "min", "max"], rows, left=1
    )
    print(
        "From the moment the award's COMMIT returned to the first look of the\n"
        f"observer (every {options.poll:g} ms, one query) that found its row. "
        + (
            "Writers sent\nno NOTIFY: the worker found the events by polling alone."
            if options.no_notify
            else "The worker\nwas woken by the writers' NOTIFY (--no-notify: polling alone)."
        )
    )
    report.figures.update(tables=figures, observer_looks=found["looks"])
    for name, figure in figures.items():
        report.figure(
            f"{name}: ms from an award's commit to its row, median (p95)",
            f"{figure['median_ms']:.1f} ({figure['p95_ms']:.1f})",
            f"median < {GOAL_MS:g} ms",
            figure["median_ms"] < GOAL_MS,
        )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report = _harness.Report("latency")
    with _harness.run_database(
        "postgres", "latency", schema=options.schema
    ) as database:
        announcing = {"HERO_NOTIFY": False} if options.no_notify else {}
        _harness.setup_django(
            database, "latency", migrate=True, **_projector.ASYNC, **announcing
        )
        from hero.conf import conf

        _harness.print_header(
            f"--awards {options.awards}, --gap {options.gap:g} ms (mean, at random), "
            f"--poll {options.poll:g} ms; HERO_PROJECTIONS='async', one hero_project "
            "process ("
            + ("polling alone" if options.no_notify else "LISTEN/NOTIFY wake-up")
            + ", poll interval "
            f"{conf.HERO_SUBSCRIPTION_POLL_INTERVAL:g} s)"
        )
        timed = WARMUP_AWARDS + options.awards
        names = [f"latency-{n:06d}" for n in range(timed + options.backlog)]
        created = _harness.create_users(names)
        warmups, users = created[:WARMUP_AWARDS], created[WARMUP_AWARDS:timed]
        backlog = created[timed:]
        context = multiprocessing.get_context("spawn")
        stop, results = context.Event(), context.Queue()
        with _projector.running(database, "latency"):
            award_at_random(warmups, 0, options.seed)
            _projector.wait_caught_up()
            observer = context.Process(
                target=observer_main,
                args=(
                    database,
                    options.schema,
                    [user.pk for user in users],
                    options.poll / 1000,
                    (stop, results),
                ),
                name="latency-observer",
            )
            observer.start()
            committed = award_at_random(users, options.gap / 1000, options.seed)
            try:
                found = results.get(timeout=SEEN_TIMEOUT)
            except queue.Empty:
                stop.set()
                found = results.get(timeout=SEEN_TIMEOUT)
            observer.join()
            if "error" in found:
                raise SystemExit(f"the observer failed:\n{found['error']}")
            catch_up(backlog, report)
            check(committed, found["seen"], report)
        print_figures(committed, found, options, report)
        return report.finish(options.summary)


if __name__ == "__main__":
    sys.exit(main())
