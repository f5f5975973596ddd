from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hero.conf import conf
from hero.management.base import TranslatedCommand
from hero.projections.inline import READ_MODELS
from hero.projections.worker import NotCaughtUp, run_projections
from hero.validation import positive_seconds


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Keep hero's read tables up to date by following the event store "
        "(for HERO_PROJECTIONS = 'async'). Stops cleanly on SIGTERM or Ctrl-C and "
        "resumes where it stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "projections",
            nargs="*",
            metavar="PROJECTION",
            help=_("Projections to run (default: all of %(names)s).")
            % {"names": ", ".join(READ_MODELS)},
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help=_("Catch up with the store as it is now, then exit."),
        )
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            default=600.0,
            help=_("With --once: give up after this many seconds (default 600)."),
        )

    def handle(
        self,
        *args: Any,
        projections: list[str],
        once: bool,
        timeout: float,
        **options: Any,
    ) -> None:
        unknown = [p for p in projections if p not in READ_MODELS]
        if unknown:
            raise CommandError(f"Unknown projection {', '.join(map(repr, unknown))}.")
        alias = conf.HERO_DATABASE
        names = projections or list(READ_MODELS)
        try:
            run_projections(
                alias,
                names,
                once=once,
                timeout=timeout,
                on_start=lambda: self.stdout.write(
                    f"Projecting {', '.join(names)} from database {alias!r}."
                ),
            )
        except NotCaughtUp as error:
            raise CommandError(str(error)) from None
        self.stdout.write("Stopped; the next run resumes from the recorded positions.")
