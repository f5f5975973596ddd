from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class HeroConfig(AppConfig):
    name = "hero"
    verbose_name = "Achievements"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hero import autodiscover, checks  # noqa: F401  (registers the checks)
        from hero.ledger import add_save_listener
        from hero.projections import project_inline

        autodiscover()
        # The write side knows nothing of the read side: plug projections in here.
        add_save_listener(project_inline)
        post_migrate.connect(_sync_catalog, sender=self)


def _sync_catalog(using: str, **kwargs: Any) -> None:
    from hero.catalog import sync_catalog

    sync_catalog(using)
