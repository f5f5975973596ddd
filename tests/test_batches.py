"""hero's batches on PostgreSQL (hero.store.postgres): the statements of hero's
transaction or savepoint go to the server as queries of several statements,
each cursor reads its own results, and what the server refuses is raised
where results are read and undone as far as hero's work goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import DataError, connections, transaction

from hero.store import postgres
from tests.conftest import Backend
from tests.test_round_trips import traced

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = "INSERT INTO hero_tracking (application_name, notification_id) VALUES (%s, %s)"


@pytest.fixture
def alias(backend: Backend) -> str:
    if backend.name != "postgres":
        pytest.skip("hero batches its statements on PostgreSQL")
    return backend.alias


def kept(alias: str) -> dict[str, int]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT application_name, notification_id FROM hero_tracking")
        return dict(cursor.fetchall())


def test_a_batch_sends_its_statements_together_and_each_cursor_reads_its_own(
    alias: str, tmp_path: Path
) -> None:
    connection = connections[alias]
    read: dict[str, Any] = {}

    def call() -> None:
        with postgres.pipelined_transaction(connection) as batched:
            assert batched
            first, second, third, fourth, fifth = (
                connection.cursor() for _ in range(5)
            )
            first.execute("SELECT %s::int", [1])
            second.execute("SELECT %s::text, %s::int", ["50% off", 2])
            third.executemany(INSERT, [("batch-a", 1), ("batch-b", 2)])
            fourth.execute("SELECT 3 -- a comment closing the statement")
            fifth.execute("SELECT generate_series(1, %s)", [5])
            # Read out of order: the first read sends every statement queued.
            read["second"] = second.fetchall()
            read["first"] = first.fetchone()
            read["third"] = third.rowcount
            read["fourth"] = fourth.fetchone()
            read["fifth"] = [fifth.fetchmany(2), fifth.fetchone(), list(fifth)]

    # Act: one wait for the reads, one for the commit.
    waits = traced(Backend("postgres", alias), tmp_path, call)

    # Assert
    assert read == {
        "second": [("50% off", 2)],
        "first": (1,),
        "third": 2,
        "fourth": (3,),
        "fifth": [[(1,), (2,)], (3,), [(4,), (5,)]],
    }
    assert waits == 2
    assert kept(alias) == {"batch-a": 1, "batch-b": 2}


def test_a_statement_refused_is_raised_where_results_are_read_and_nothing_is_kept(
    alias: str,
) -> None:
    connection = connections[alias]
    with pytest.raises(DataError, match="division by zero"):
        with postgres.pipelined_transaction(connection):
            with connection.cursor() as cursor:
                cursor.execute(INSERT, ["refused", 1])
                cursor.execute("SELECT 1 / %s", [0])
                cursor.fetchone()

    # Rolled back, and the connection usable at once.
    assert kept(alias) == {}
    assert connection.connection.pgconn.transaction_status == 0  # idle


def test_in_the_callers_transaction_a_refusal_undoes_heros_work_only(
    alias: str,
) -> None:
    connection = connections[alias]
    with transaction.atomic(using=alias):
        with connection.cursor() as cursor:
            cursor.execute(INSERT, ["before", 1])
        with pytest.raises(DataError):
            with postgres.pipelined_savepoint(connection) as batched:
                assert batched
                with connection.cursor() as cursor:
                    cursor.execute(INSERT, ["hero's", 2])
                    cursor.execute("SELECT 1 / %s", [0])
                    cursor.fetchone()
        with connection.cursor() as cursor:
            cursor.execute(INSERT, ["after", 3])

    assert kept(alias) == {"before": 1, "after": 3}


def test_a_block_that_fails_before_anything_is_sent_leaves_the_callers_alone(
    alias: str,
) -> None:
    connection = connections[alias]
    with transaction.atomic(using=alias):
        with connection.cursor() as cursor:
            cursor.execute(INSERT, ["before", 1])
        with pytest.raises(RuntimeError, match="the site's own"):
            with postgres.pipelined_savepoint(connection):
                with connection.cursor() as cursor:
                    cursor.execute(INSERT, ["never sent", 2])
                raise RuntimeError("the site's own")
        # Nothing to undo was sent: the caller's transaction goes on.
        assert not connection.needs_rollback

    assert kept(alias) == {"before": 1}


def test_more_statements_than_one_query_holds_go_in_several(alias: str) -> None:
    connection = connections[alias]
    rows = [(f"row-{n}", n) for n in range(postgres._BATCH_SIZE * 2 + 7)]
    with postgres.pipelined_transaction(connection):
        with connection.cursor() as cursor:
            cursor.executemany(INSERT, rows)
            assert cursor.rowcount == len(rows)

    assert kept(alias) == dict(rows)


def test_the_orm_reads_and_writes_inside_a_batch(alias: str) -> None:
    # Arrange: a site's achievement that reads its own tables as it decides
    # runs inside hero's transaction.
    connection = connections[alias]
    users = get_user_model().objects.db_manager(alias)
    users.create_user("ann")

    # Act
    with postgres.pipelined_transaction(connection):
        created = users.create_user("bob")
        counted = users.filter(username__in=["ann", "bob"]).count()
        names = list(users.order_by("username").values_list("username", flat=True))
        users.filter(pk=created.pk).update(first_name="Bob")

    # Assert
    assert (counted, names) == (2, ["ann", "bob"])
    assert users.get(pk=created.pk).first_name == "Bob"


def batched_rows(alias: str, *statements: tuple[str, Any]) -> list[Any]:
    """Each statement's rows, the statements sent in one batch of hero's."""
    connection = connections[alias]
    with postgres.pipelined_transaction(connection):
        cursors = [connection.cursor() for _ in statements]
        for cursor, (sql, params) in zip(cursors, statements, strict=True):
            cursor.execute(sql, params)
        return [cursor.fetchall() for cursor in cursors]


def test_a_statement_bound_again_from_the_same_values_is_the_one_kept(
    alias: str,
) -> None:
    # Arrange: values equal to one another, but not of one type, and lists.
    sql = "SELECT %s, %s::text[]"
    statements = [
        (sql, [1, ["a", "b"]]),
        (sql, [True, ["a", "b"]]),
        (sql, [1, ["a", "b"]]),
        (sql, [1, ["a", "c"]]),
        (sql, [b"1", ["a", "b"]]),  # bytes: bound, not kept
    ]

    # Act: twice, in two batches.
    first = batched_rows(alias, *statements)
    second = batched_rows(alias, *statements)

    # Assert: the values as they were given, each time.
    assert (
        first
        == second
        == [
            [(1, ["a", "b"])],
            [(True, ["a", "b"])],
            [(1, ["a", "b"])],
            [(1, ["a", "c"])],
            [(b"1", ["a", "b"])],
        ]
    )
    assert [type(rows[0][0]) for rows in first] == [int, bool, int, int, bytes]
    binder = connections[alias]._hero_binder
    kept = {key[1:]: statement for key, statement in binder.kept.items()}
    assert kept == {
        ((int, 1), (list, ("a", "b"))): "SELECT 1, '{a,b}'::text[]",
        ((bool, True), (list, ("a", "b"))): "SELECT true, '{a,b}'::text[]",
        ((int, 1), (list, ("a", "c"))): "SELECT 1, '{a,c}'::text[]",
    }


def test_a_connection_binds_anew_after_a_reconnection_and_keeps_so_many(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    monkeypatch.setattr(postgres, "_KEPT_STATEMENTS", 2)
    connection = connections[alias]
    batched_rows(alias, ("SELECT %s", [1]))
    before = connection._hero_binder

    # Act: a third statement kept starts again; a new connection, a new binder.
    rows = batched_rows(alias, ("SELECT %s", [2]), ("SELECT %s", [3]))
    kept = dict(before.kept)
    connection.close()
    again = batched_rows(alias, ("SELECT %s", [4]))

    # Assert
    assert (rows, again) == ([[(2,)], [(3,)]], [[(4,)]])
    assert [key[1] for key in kept] == [(int, 3)]
    assert connection._hero_binder is not before
    assert [key[1] for key in connection._hero_binder.kept] == [(int, 4)]
