"""Backfill benchmark: awards per second of ``hero_backfill``, and of many
``unlock()`` calls in one transaction, on SQLite or PostgreSQL.

``--users`` users are created; ``hero_backfill`` (its default batches) awards
an achievement whose ``backfill()`` yields every one of them, then another
such achievement with every award in one transaction (``--batch-size``
``--users``), then as many other users are each awarded once by ``unlock()``,
all inside one ``transaction.atomic()``. Each is timed once, garbage collection paused, and
the tables are checked with ``hero_verify``. The goal is on wall-clock
time; the rate per CPU second is shown beside it. ``README.md`` has the goals::

    .venv/bin/python benchmarks/backfill.py [--users 20000] [--database postgres]
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import _harness


def main(argv: Sequence[str] | None = None) -> int:
    parser = _harness.Options(
        "Time hero_backfill, and unlock() calls in one transaction.",
        repeat=(1, "not used: each figure is one timed run"),
    )
    parser.add("--users", 20000, "users awarded by each")
    parser.add("--database", "sqlite", "the database", choices=("sqlite", "postgres"))
    options = parser.parse(argv, "users")
    report = _harness.Report("backfill")
    with _harness.run_database(options.database, "backfill") as database:
        import _points

        _harness.setup_django(database, "backfill", migrate=True)
        unlock = _points.hero_call()
        from django.core.management import call_command
        from django.db import transaction

        import hero
        from hero.models import AchievementUnlocked, LedgerEntry

        _harness.print_header(f"--users {options.users:,}")
        names = [f"bench-{n:07d}" for n in range(2 * options.users)]
        users = _harness.create_users(names)
        backfilled, unlocked = users[: options.users], users[options.users :]

        @hero.achievements.register
        class Veteran(hero.AchievementBase):
            id = "veteran"
            title = "Veteran"
            events = ["never_sent"]

            def unlock(self, **state: Any) -> None:
                return None

            def backfill(self) -> Iterator[tuple[Any, int]]:
                return ((user.pk, 1) for user in backfilled)

        @hero.achievements.register
        class Pioneer(Veteran):
            id = "pioneer"
            title = "Pioneer"

        def in_one_transaction() -> None:
            with transaction.atomic():
                for user in unlocked:
                    unlock(user, 10)

        out = io.StringIO()
        seconds = {
            "backfill": _harness.timed(
                lambda: call_command("hero_backfill", "veteran", stdout=out)
            ),
            "whole": _harness.timed(
                lambda: call_command(
                    "hero_backfill", "pioneer", batch_size=options.users, stdout=out
                )
            ),
            "atomic": _harness.timed(in_one_transaction),
        }
        rates = {what: options.users / wall for what, (wall, _) in seconds.items()}
        cpu_rates = {what: options.users / cpu for what, (_, cpu) in seconds.items()}
        for what, label in (
            ("backfill", "hero_backfill"),
            ("whole", "hero_backfill, every award in one transaction"),
            ("atomic", "unlock() x N in one transaction.atomic()"),
        ):
            wall, cpu = seconds[what]
            print(
                f"{label}: {options.users:,} awards in {wall:.2f} s ({cpu:.2f} s "
                f"CPU), {rates[what]:,.0f} awards/s ({cpu_rates[what]:,.0f} per CPU s)"
            )

        holdings = AchievementUnlocked.objects.values_list("achievement_id", flat=True)
        held = {
            a: holdings.filter(achievement_id=a).count()
            for a in ("veteran", "pioneer", "points")
        }
        verified = io.StringIO()
        call_command("hero_verify", stdout=verified)
        problems = [
            f"{a} is held by {n} users, not {options.users}"
            for a, n in held.items()
            if n != options.users
        ]
        if LedgerEntry.objects.count() != 3 * options.users:
            problems.append(f"{LedgerEntry.objects.count()} ledger entries")
        report.check(
            problems,
            f"{options.users:,} holdings of each, one ledger entry per award, "
            "hero_verify passed",
        )
        report.figures.update(
            database=options.database, rates=rates, cpu_rates=cpu_rates
        )
        report.figure(
            f"hero_backfill: awards/s (per CPU second), {options.database}",
            f"{rates['backfill']:,.0f} ({cpu_rates['backfill']:,.0f})",
            ">= 10,000" if options.database == "sqlite" else "",
            rates["backfill"] >= 10_000 if options.database == "sqlite" else None,
        )
        report.figure(
            f"hero_backfill, all in one transaction: awards/s (per CPU s), {options.database}",
            f"{rates['whole']:,.0f} ({cpu_rates['whole']:,.0f})",
        )
        report.figure(
            f"unlock() in one transaction: awards/s (per CPU s), {options.database}",
            f"{rates['atomic']:,.0f} ({cpu_rates['atomic']:,.0f})",
        )
        return report.finish(options.summary)


if __name__ == "__main__":
    sys.exit(main())
