from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hero.conf import conf
from hero.management.base import TranslatedCommand
from hero.management.progress import ProgressReporter
from hero.projections.inline import READ_MODELS
from hero.projections.rebuild import rebuild


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Rebuild hero's read tables from the whole event store, in batches. "
        "Killed part-way, run it again: it resumes where it stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "projections",
            nargs="*",
            metavar="PROJECTION",
            help=_("Projections to rebuild (default: all of %(names)s).")
            % {"names": ", ".join(READ_MODELS)},
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help=_("Events per transaction (default 1000)."),
        )

    def handle(
        self, *args: Any, projections: list[str], batch_size: int, **options: Any
    ) -> None:
        unknown = [p for p in projections if p not in READ_MODELS]
        if unknown:
            raise CommandError(
                f"Unknown projection {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(READ_MODELS)}."
            )
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        progress = ProgressReporter(self.stdout, interactive=self.stdout.isatty())
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
                f"Rebuilt {', '.join(result.projections)}: {how}{result.events} events "
                f"in {elapsed:.1f}s ({rate:,.0f} events/s)."
            )
        )
