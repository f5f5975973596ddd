from __future__ import annotations

import gc
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from eventsourcing.projection import ProjectionRunner

from hero.conf import conf
from hero.ledger import Ledger
from hero.projections import VIEW_CLASSES
from hero.projections.base import View, ViewProjection


class Command(BaseCommand):
    help = (
        "Keep hero's read tables up to date by following the event store "
        "(for HERO_PROJECTIONS = 'async'). Stops cleanly on SIGTERM or Ctrl-C and "
        "resumes where it stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "projections",
            nargs="*",
            metavar="PROJECTION",
            help=f"Projections to run (default: all of {', '.join(VIEW_CLASSES)}).",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Catch up with the store as it is now, then exit.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=600.0,
            help="With --once: give up after this many seconds (default 600).",
        )

    def handle(
        self,
        *args: Any,
        projections: list[str],
        once: bool,
        timeout: float,
        **options: Any,
    ) -> None:
        unknown = [p for p in projections if p not in VIEW_CLASSES]
        if unknown:
            raise CommandError(f"Unknown projection {', '.join(map(repr, unknown))}.")
        alias = conf.HERO_DATABASE
        env = {"PERSISTENCE_MODULE": "hero.persistence", "DJANGO_DATABASE": alias}
        stop = threading.Event()
        runners = [
            ProjectionRunner(
                application_class=_ledger_class(alias),
                projection_class=_projection_class(VIEW_CLASSES[name]),
                view_class=VIEW_CLASSES[name],
                env=env,
            )
            for name in projections or VIEW_CLASSES
        ]
        previous = {
            sig: signal.signal(sig, lambda *_: stop.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
            if threading.current_thread() is threading.main_thread()
        }
        names = ", ".join(projections or VIEW_CLASSES)
        self.stdout.write(f"Projecting {names} from database {alias!r}.")
        try:
            for runner in runners:
                runner.__enter__()
            if once:
                target = runners[0].app.recorder.max_notification_id()
                for runner in runners:
                    try:
                        runner.wait(target, timeout=timeout)
                    except TimeoutError:
                        hint = ""
                        if connections[alias].in_atomic_block:
                            hint = (
                                " This command was called inside a transaction on "
                                f"{alias!r}: the projections read the store on "
                                "connections of their own, which see only committed "
                                "events. Commit first."
                            )
                        raise CommandError(
                            f"Not caught up with position {target} after "
                            f"{timeout:.0f}s.{hint}"
                        ) from None
            else:
                while not stop.wait(0.5):
                    for runner in runners:
                        runner.run_forever(timeout=0)  # re-raises a runner's error
        finally:
            for runner in runners:
                runner.__exit__(None, None, None)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if not any(c.in_atomic_block for c in connections.all()):
                # Never a caller's connection while its transaction is open.
                connections.close_all()
            # The runners' threads have ended; collecting them closes the
            # database connections they opened.
            gc.collect()
        self.stdout.write("Stopped; the next run resumes from the recorded positions.")


def _ledger_class(alias: str) -> type[Ledger]:
    class FollowedLedger(Ledger):
        name = Ledger.name  # eventsourcing names subclasses after the class

        def __init__(self, env: Any = None) -> None:
            super().__init__(alias)

    return FollowedLedger


def _projection_class(view_class: type[View]) -> type[ViewProjection]:
    return type(
        f"{view_class.__name__}Projection", (ViewProjection,), {"name": view_class.name}
    )
