"""Users as events record them (by pk, as a string): which still exist, and
their pks as column values."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.db import connections

from hero.conf import conf

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper


def user_model() -> Any:
    """The user model, looked up once per ``AUTH_USER_MODEL`` value."""
    return conf.user_model


def existing_user_pks(alias: str, pks: Iterable[str]) -> set[str]:
    """The pks (as strings) of those users that are still in the database."""
    wanted = set(pks)
    if not wanted:
        return set()
    model = user_model()
    pk_field = model._meta.pk
    assert pk_field is not None
    connection = connections[alias]
    qn = connection.ops.quote_name
    column_value = user_pk_adapter(connection)
    values = [column_value(pk) for pk in wanted]
    # One plain query (this runs for every batch of a rebuild, where the ORM's
    # own cost of building it would be most of the time).
    found: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            cursor.execute(
                f"SELECT {qn(pk_field.column)} FROM {qn(model._meta.db_table)} "
                f"WHERE {qn(pk_field.column)} IN ({', '.join(['%s'] * len(chunk))})",
                chunk,
            )
            found.update(str(pk_field.to_python(row[0])) for row in cursor.fetchall())
    return found


#: Values per query, within every backend's limit on parameters.
CHUNK = 900


def user_pk_adapter(connection: BaseDatabaseWrapper) -> Callable[[str], Any]:
    """Turn a user pk as events record it (a string) into a column value."""
    pk_field = user_model()._meta.pk
    assert pk_field is not None
    target = pk_field.target_field if pk_field.is_relation else pk_field
    if target.get_internal_type() in INTEGER_PKS:
        return int  # what to_python() and get_db_prep_value() come to
    to_python, prep = target.to_python, target.get_db_prep_value
    return lambda value: prep(to_python(value), connection)


INTEGER_PKS = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}
