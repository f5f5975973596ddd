from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.utils.translation import gettext_lazy

from hero.conf import conf
from hero.management.base import TranslatedCommand
from hero.projections.verify import verify
from hero.store import verify_chain


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Replay hero's event store and compare it with the read tables. Prints every "
        "difference and exits with status 1 if there is any."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        chain = verify_chain()
        if not chain.intact:
            self.stdout.write(
                f"event store: the hash chain is broken at position {chain.broken_at}: "
                "the event there, or the one before it, was edited, deleted or moved "
                f"({chain.checked} events before it are intact)"
            )
        result = verify(conf.HERO_DATABASE)
        if not chain.intact:
            result.differences.insert(0, "event store: broken hash chain")
        for difference in result.differences:
            self.stdout.write(difference)
        for name, count in result.behind.items():
            self.stdout.write(
                f"{name}: {count} events behind the store (not yet projected)"
            )
        checked = ", ".join(
            [
                f"{chain.checked} events chained",
                *(f"{n} {name}" for name, n in result.checked.items()),
            ]
        )
        if result.differences:
            raise CommandError(
                f"{len(result.differences)} difference(s) between the store and the "
                "read tables. Run manage.py hero_rebuild to rebuild them from the store."
            )
        self.stdout.write(
            self.style.SUCCESS(f"The read tables match the event store ({checked}).")
        )
