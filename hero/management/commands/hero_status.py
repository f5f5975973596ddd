from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy

from hero.management.base import TranslatedCommand
from hero.store import store_status


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Show where hero's event store is and how far each follower has read it."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        status = store_status()
        # As hero_verify prints it, and as its --anchor takes it.
        head = f"{status.head_position}:{status.head.hex()}" if status.head else "-"
        self.stdout.write(
            f"Event store: database {status.alias!r} ({status.vendor})\n"
            f"  events:           {status.events}\n"
            f"  last position:    {status.last_position or '-'}\n"
            f"  snapshots:        {status.snapshots}\n"
            f"  chain head:       {head}"
        )
        if status.vendor == "postgresql":
            # Linked after the commit: by the writer, or by hero_project.
            self.stdout.write(f"  to be linked:     {status.unlinked}")
        if not status.tracking:
            self.stdout.write("  followers:        none")
        for name, position in sorted(status.tracking.items()):
            behind = (status.last_position or 0) - position
            self.stdout.write(f"  follower {name}: at {position} ({behind} behind)")
        for name in status.rebuilding:
            self.stdout.write(
                f"  follower {name}: being rebuilt (run manage.py hero_rebuild to finish)"
            )
