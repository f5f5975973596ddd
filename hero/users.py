"""Which of a set of users (by pk, as events record them) still exist."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model


def existing_user_pks(alias: str, pks: Iterable[str]) -> set[str]:
    """The pks (as strings) of those users that are still in the database."""
    wanted = set(pks)
    if not wanted:
        return set()
    user_model = get_user_model()
    pk_field = user_model._meta.pk
    assert pk_field is not None
    users = user_model._default_manager.db_manager(alias)
    values = [pk_field.to_python(pk) for pk in wanted]
    return {str(pk) for pk in users.filter(pk__in=values).values_list("pk", flat=True)}
