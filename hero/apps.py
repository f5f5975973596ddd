from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_delete
from django.utils.translation import gettext_lazy as _

from hero import autodiscover
from hero.ledger import add_forget_listener, add_save_listener


class HeroConfig(AppConfig):
    name = "hero"
    verbose_name = _("Achievements")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the app registry is ready, not when Django imports this
        # module: importing hero.checks registers the system checks, and the
        # projections import hero.models.
        from hero import checks  # noqa: F401
        from hero.projections.inline import forget_inline, project_inline
        from hero.users import user_model

        autodiscover()
        # The write side knows nothing of the read side: plug projections in here.
        add_save_listener(project_inline)
        add_forget_listener(forget_inline)
        post_migrate.connect(_sync_catalog, sender=self)
        # Deleting a user forgets them, in the deleting transaction. Connected
        # for the user model only: a receiver for every model would keep Django
        # from deleting any other model's rows in bulk (its fast delete).
        pre_delete.connect(
            _forget_deleted_user, sender=user_model(), dispatch_uid="hero.forget"
        )


def _sync_catalog(using: str, apps: Any = None, **kwargs: Any) -> None:
    # After `migrate hero zero` there is no catalog to write: the state the
    # migrations left has no hero models (Django's permissions do the same).
    if apps is not None:
        try:
            apps.get_model("hero", "Achievement")
        except LookupError:
            return
    # Not at the top: it imports hero.models, and Django imports this module first.
    from hero.catalog import sync_catalog

    sync_catalog(using)


def _forget_deleted_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Not at the top: hero.achievements imports the models.
    from hero.achievements import forget

    forget(instance)
