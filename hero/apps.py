from __future__ import annotations

from django.apps import AppConfig


class HeroConfig(AppConfig):
    name = "hero"
    verbose_name = "Achievements"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hero import autodiscover, checks  # noqa: F401  (registers the checks)

        autodiscover()
