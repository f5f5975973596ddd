from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hero.conf import conf
from hero.management.base import TranslatedCommand
from hero.projections.verify import verify
from hero.store import verify_chain
from hero.store.chain import link_committed


def parse_anchor(value: str) -> tuple[int, bytes]:
    """``POSITION:LINK`` as hero_verify prints the head, e.g. ``1042:6a38…``."""
    position, _colon, link = value.partition(":")
    try:
        result = int(position), bytes.fromhex(link)
    except ValueError:
        result = (0, b"")
    if result[0] < 1 or len(result[1]) != 32:
        raise CommandError(
            f"--anchor {value!r}: give the position and the link as hero_verify "
            "prints the head, POSITION:LINK (a position of 1 or more, and 64 "
            "hexadecimal digits)."
        )
    return result


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Check the event store's chain, then replay the store and compare it with "
        "the read tables. Prints every difference and exits with status 1 if there "
        "is any."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            metavar="POSITION:LINK",
            help=_(
                "A head printed by an earlier run and kept elsewhere: the chain "
                "must still hold that link at that position."
            ),
        )

    def handle(self, *args: Any, anchor: str | None = None, **options: Any) -> None:
        kept = None if anchor is None else parse_anchor(anchor)
        # Events a writer committed but did not live to link (PostgreSQL).
        link_committed()
        chain = verify_chain(anchor=kept)
        differences: list[str] = []
        if chain.broken_at is not None:
            differences.append(
                f"event store: the hash chain is broken at position {chain.broken_at}: "
                "the event there, or the one before it, was edited, deleted, moved "
                "or forged (no chain key gives its link; "
                f"{chain.checked} events before it are intact)"
            )
        elif chain.anchored is False:
            assert kept is not None
            differences.append(
                f"event store: the chain does not hold the kept link at position "
                f"{kept[0]}: events up to there were removed or linked again"
            )
        for stretch in chain.stretches:
            self.stdout.write(
                f"chain: positions {stretch.first}-{stretch.last} verified with the "
                f"{stretch.key.label} key ({stretch.key.fingerprint})"
            )
        if chain.head is not None and chain.broken_at is None:
            self.stdout.write(
                f"chain head: {chain.head_position}:{chain.head.hex()} "
                "(keep it elsewhere; check later with --anchor)"
            )
        result = verify(conf.HERO_DATABASE)
        differences += result.differences
        for difference in differences:
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
        if differences:
            raise CommandError(
                f"{len(differences)} difference(s) between the store and the "
                "read tables. Run manage.py hero_rebuild to rebuild them from the store."
            )
        self.stdout.write(
            self.style.SUCCESS(f"The read tables match the event store ({checked}).")
        )
