"""Linking benchmark: a backlog of events left unlinked, linked to the chain, on
PostgreSQL.

With ``HERO_PROJECTIONS = "async"`` every award leaves its events sealed for
``hero_project`` to link; a worker stopped for a while comes back to a backlog.
This makes ``--events`` awards, each to a new user (a thousand to a
transaction, no worker running), then links them all as the worker and
``hero_verify`` do (:func:`hero.store.chain.link_committed`), timed once with
garbage collection paused. The goal: the linker's memory does not grow with
the backlog (peak RSS less than ``FLAT_MB`` above the RSS before it, at any
size). ``README.md`` has the method.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import _harness

#: The most the linker's peak RSS may rise above the RSS before it, in MB.
FLAT_MB = 20
#: Awards committed in each transaction while the backlog is made.
PER_TRANSACTION = 1000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _harness.Options(
        "Time linking a backlog of events to the chain, on PostgreSQL."
    )
    text = "also write the headline figures and checks as JSON to FILE"
    parser.add("--summary", None, text + " (for run_all.py)", metavar="FILE")
    parser.add("--events", 20_000, "awards left unlinked, each to a new user")
    text = "the PostgreSQL schema of the run, created and dropped"
    parser.add("--schema", "hero_linking_bench", text)
    return parser.parse(argv, "events")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report = _harness.Report("linking")
    with _harness.run_database("postgres", "linking", schema=options.schema) as db:
        import _points

        _harness.setup_django(db, "linking", migrate=True, HERO_PROJECTIONS="async")
        call = _points.hero_call()
        from django.db import transaction

        from hero.models import StoredEvent
        from hero.store import verify_chain
        from hero.store.chain import LINK_BATCH, link_committed

        _harness.print_header(f"--events {options.events:,}")
        users = _harness.create_users(
            [f"linking-{n:07d}" for n in range(options.events)]
        )
        for start in range(0, len(users), PER_TRANSACTION):
            with transaction.atomic():
                for user in users[start : start + PER_TRANSACTION]:
                    call(user, 10)
        waiting = StoredEvent.objects.filter(chain__isnull=True).count()

        memory = _harness.PeakRss()
        linked = 0

        def link_all() -> None:
            nonlocal linked
            linked = link_committed()

        wall, cpu = _harness.timed(link_all)
        growth = memory.growth()

        left = StoredEvent.objects.filter(chain__isnull=True).count()
        check = verify_chain()
        report.check(
            [f"{waiting:,} events waited, not {options.events:,}"]
            if waiting != options.events
            else [],
            f"the {options.events:,} awards' events waited to be linked",
        )
        report.check(
            [f"{linked:,} events linked, {left:,} left"]
            if linked != options.events or left
            else [],
            f"every event linked ({linked:,})",
        )
        report.check(
            [] if check.intact else [f"the chain does not verify: {check}"],
            "the chain verifies to the last event",
        )
        report.check_hero_verify()

        rate = linked / wall if wall else 0.0
        print(
            f"Linked {linked:,} events in {wall:.2f} s ({cpu:.2f} s CPU), "
            f"{rate:,.0f} events/s, {LINK_BATCH:,} to a transaction; peak RSS "
            f"+{_harness.mb(growth)} (the process's lifetime peak "
            f"{_harness.mb(_harness.lifetime_peak_rss())})"
        )
        report.figures.update(
            events=linked, seconds=wall, cpu_seconds=cpu, rss_growth=growth
        )
        report.figure("linking a backlog: events/s", f"{rate:,.0f}")
        report.figure(
            f"linking a backlog of {linked:,}: peak RSS above the RSS before",
            f"+{_harness.mb(growth)}",
            f"< {FLAT_MB} MB",
            growth < FLAT_MB * _harness.MB,
        )
        return report.finish(options.summary)


if __name__ == "__main__":
    sys.exit(main())
