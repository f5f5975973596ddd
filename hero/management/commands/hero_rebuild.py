from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hero.conf import conf
from hero.projections import VIEW_CLASSES
from hero.projections.rebuild import rebuild


class Command(BaseCommand):
    help = (
        "Rebuild hero's read tables from the whole event store, in batches. "
        "Killed part-way, run it again: it resumes where it stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "projections",
            nargs="*",
            metavar="PROJECTION",
            help=f"Projections to rebuild (default: all of {', '.join(VIEW_CLASSES)}).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Events per transaction (default 1000)."
        )

    def handle(self, *args: Any, projections: list[str], batch_size: int, **options: Any) -> None:
        unknown = [p for p in projections if p not in VIEW_CLASSES]
        if unknown:
            raise CommandError(
                f"Unknown projection {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(VIEW_CLASSES)}."
            )
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        progress = Progress(self.stdout, interactive=self.stdout.isatty())
        started = time.monotonic()
        result = rebuild(
            conf.HERO_DATABASE,
            projections or None,
            batch_size=batch_size,
            on_start=progress.start,
            on_batch=progress.advance,
        )
        progress.close()
        elapsed = time.monotonic() - started
        rate = result.events / elapsed if elapsed > 0 else 0.0
        how = f"resumed {', '.join(result.resumed)}; " if result.resumed else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Rebuilt {', '.join(result.views)}: {how}{result.events} events "
                f"in {elapsed:.1f}s ({rate:,.0f} events/s)."
            )
        )


class Progress:
    """A progress bar in a terminal (tqdm), plain lines otherwise."""

    def __init__(self, stdout: Any, *, interactive: bool, every: float = 5.0) -> None:
        self.stdout = stdout
        self.interactive = interactive
        self.every = every
        self.bar: Any = None
        self.total = self.done = 0
        self.started = self.last = time.monotonic()

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        if self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="event", unit_scale=True)
        else:
            self.stdout.write(f"Rebuilding: {done} of {total} events already done.")

    def advance(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            left = max(self.total - self.done, 0) / rate if rate else 0
            self.stdout.write(
                f"  {self.done} of {self.total} events, {rate:,.0f} events/s, "
                f"about {left:.0f}s left"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
