from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy

from hero.catalog import sync_catalog
from hero.conf import conf
from hero.management.base import TranslatedCommand


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Write the registered achievements into the catalog table (also done on "
        "migrate)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = sync_catalog(conf.HERO_DATABASE)
        self.stdout.write(f"{result.current} achievements in the catalog.")
        if result.retired:
            self.stdout.write(
                f"Retired (no longer defined): {', '.join(result.retired)}"
            )
