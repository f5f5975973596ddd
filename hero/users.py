"""Which of a set of users (by pk, as events record them) still exist."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import connections


def existing_user_pks(alias: str, pks: Iterable[str]) -> set[str]:
    """The pks (as strings) of those users that are still in the database."""
    wanted = set(pks)
    if not wanted:
        return set()
    user_model = get_user_model()
    pk_field = user_model._meta.pk
    assert pk_field is not None
    connection = connections[alias]
    qn = connection.ops.quote_name
    values = [
        pk_field.get_db_prep_value(pk_field.to_python(pk), connection) for pk in wanted
    ]
    # One plain query (this runs for every batch of a rebuild, where the ORM's
    # own cost of building it would be most of the time).
    found: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            cursor.execute(
                f"SELECT {qn(pk_field.column)} FROM {qn(user_model._meta.db_table)} "
                f"WHERE {qn(pk_field.column)} IN ({', '.join(['%s'] * len(chunk))})",
                chunk,
            )
            found.update(str(pk_field.to_python(row[0])) for row in cursor.fetchall())
    return found


#: Values per query, within every backend's limit on parameters.
CHUNK = 900
