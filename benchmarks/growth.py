"""Growth benchmark: an award's time as the event store grows.

Makes ``--awards`` first awards, each to a new user in a transaction of hero's
own (autocommit), and times them in blocks of ``--block``: an append must cost
the same at the last block as at the first, whatever the store holds and
however many events were linked since the table was last vacuumed. The goal:
the median of the last three blocks within 25 % of the first three's.
``README.md`` has the method.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import _harness

#: How far the last blocks' median may stray from the first blocks'.
FLAT_WITHIN = 0.25
#: Blocks at each end whose median is compared.
ENDS = 3
WARMUP_AWARDS = 100


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _harness.Options("Time hero's awards as its event store grows.")
    text = "also write the headline figures and checks as JSON to FILE"
    parser.add("--summary", None, text + " (for run_all.py)", metavar="FILE")
    parser.add(
        "--database",
        "postgres",
        "the database",
        choices=("sqlite", "postgres", "mysql"),
    )
    parser.add("--awards", 20_000, "first awards timed, each to a new user")
    parser.add("--block", 1_000, "awards per timed block")
    text = (
        "PostgreSQL: the schema of the run (MariaDB: its database), created and dropped"
    )
    parser.add("--schema", "hero_growth_bench", text)
    options = parser.parse(argv, "awards", "block")
    if options.awards < 2 * ENDS * options.block:
        parser.error(f"--awards must be at least {2 * ENDS} blocks")
    return options


def time_blocks(awards: int, block: int) -> list[float]:
    """ms per award of each block of ``block`` first awards."""
    import _points

    call = _points.hero_call()
    names = [f"growth-{n:07d}" for n in range(WARMUP_AWARDS + awards)]
    users = _harness.create_users(names)
    for user in users[:WARMUP_AWARDS]:
        call(user, 10)
    timed = users[WARMUP_AWARDS:]
    per_award = []
    for first in range(0, len(timed) - block + 1, block):
        with _harness.gc_paused():
            start = time.perf_counter()
            for user in timed[first : first + block]:
                call(user, 10)
            seconds = time.perf_counter() - start
        per_award.append(1000 * seconds / block)
    return per_award


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report = _harness.Report("growth")
    with _harness.run_database(
        options.database, "growth", schema=options.schema
    ) as database:
        _harness.setup_django(database, "growth", migrate=True)
        _harness.print_header(
            f"--awards {options.awards:,} in blocks of {options.block:,}, each a "
            f"first award to a new user in a transaction of hero's own, after "
            f"{WARMUP_AWARDS} untimed"
        )
        per_award = time_blocks(options.awards, options.block)
        stored = _harness.stored_events()
        expected = WARMUP_AWARDS + len(per_award) * options.block
        report.check(
            [] if stored == expected else [f"{stored:,} events, not {expected:,}"],
            f"the store holds the {expected:,} awards' events",
        )
        report.check_hero_verify()

    rows = [
        [
            f"{n + 1}",
            f"{WARMUP_AWARDS + (n + 1) * options.block:,}",
            f"{ms:.3f}",
        ]
        for n, ms in enumerate(per_award)
    ]
    _harness.print_table(["block", "events at its end", "ms per award"], rows)
    first = statistics.median(per_award[:ENDS])
    last = statistics.median(per_award[-ENDS:])
    ratio = last / first
    print(
        f"\nThe median of the first {ENDS} blocks against the last {ENDS}'s: a "
        "store that\ngrows must not make an append dearer."
    )
    report.figures.update(
        ms_per_award=per_award, first_ms=first, last_ms=last, ratio=ratio
    )
    report.figure(
        f"ms per award, first {ENDS} blocks -> last {ENDS} (median)",
        f"{first:.3f} -> {last:.3f} ({ratio:.2f}x)",
        f"<= {1 + FLAT_WITHIN:.2f}x",
        ratio <= 1 + FLAT_WITHIN,
    )
    return report.finish(options.summary)


if __name__ == "__main__":
    sys.exit(main())
