from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.utils.translation import gettext_lazy

from hero.conf import conf
from hero.exceptions import ChainBroken
from hero.management.base import TranslatedCommand
from hero.sealing import rewrap_keys
from hero.store.chain import chain_keys, rekey, verify_chain


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Link every event of hero's store again with the current chain key, after "
        "checking each link with the keys that may have made it (the current one "
        "and the fallbacks). Run it after rotating the key, before dropping the old "
        "one from the fallbacks. Writers wait while it runs."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = rekey(conf.HERO_DATABASE)
        except ChainBroken as error:
            raise CommandError(str(error)) from None
        # The data keys are wrapped with a key derived from the chain key.
        rewrapped = rewrap_keys(conf.HERO_DATABASE)
        chain = verify_chain()
        key = chain_keys()[0]
        self.stdout.write(
            f"Linked {count} events with the current key ({key.fingerprint})."
        )
        self.stdout.write(f"Wrapped {rewrapped} data keys with the current key.")
        if chain.head is not None:
            self.stdout.write(
                f"chain head: {chain.head_position}:{chain.head.hex()} "
                "(heads kept from before no longer apply: keep this one instead)"
            )
