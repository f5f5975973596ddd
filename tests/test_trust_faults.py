"""Faults: what is left after a rollback, a process killed with SIGKILL part-way
through its work, or a database that cannot be reached.

The killed processes are real children on the test database (``python -m
tests.trust_helpers ...``), killed with SIGKILL at a point they report, so
nothing in them gets a chance to clean up.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import OperationalError as DjangoOperationalError
from django.db import connections, transaction
from eventsourcing.persistence import OperationalError, PersistenceError

import hero
from hero.events import Outcome
from hero.models import StoredEvent
from hero.projections.verify import verify
from tests.conftest import Backend
from tests.trust_helpers import (
    captured_signals,
    children,
    make_users,
    read_tables,
    seed_store,
    table_snapshot,
    tracking,
    verify_passes,
    wait_until,
)


class Rollback(Exception):
    pass


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every signal hero sends during the test."""
    with captured_signals() as sent:
        yield sent


# The caller's transaction rolls back ------------------------------------------


def change_everything(user: Any) -> None:
    """An upgrade, a new unlock, progress that completes, and a revocation."""
    assert hero.achievements.unlock(
        "score_changed", user=user, points=1_000, night=True
    )
    assert hero.achievements.unlock("reports", user=user, level=2)
    assert hero.achievements.unlock("chapter_read", user=user, chapters=5)
    hero.achievements.revoke(user, "top_ten", reason="rolled back")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["inline", "async"])
@pytest.mark.parametrize("how", ["exception", "set_rollback", "inner_savepoint"])
def test_a_rolled_back_transaction_leaves_no_event_row_or_signal(
    backend: Backend,
    make_user: Any,
    settings: Any,
    received: list[Any],
    how: str,
    mode: str,
) -> None:
    # Arrange: a user who already holds three achievements (committed).
    settings.HERO_PROJECTIONS = mode
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    hero.achievements.unlock("reports", user=user, level=1)
    hero.achievements.unlock("rank_changed", user=user, rank=1)
    before = table_snapshot(backend.alias)
    received.clear()

    # Act: every kind of change, in a transaction (or savepoint) that rolls back.
    alias = backend.alias
    if how == "exception":
        with pytest.raises(Rollback), transaction.atomic(using=alias):
            change_everything(user)
            raise Rollback
    elif how == "set_rollback":
        with transaction.atomic(using=alias):
            change_everything(user)
            transaction.set_rollback(True, using=alias)
    else:
        with transaction.atomic(using=alias):
            user.first_name = "kept"
            user.save(using=alias)
            with pytest.raises(Rollback), transaction.atomic(using=alias):
                change_everything(user)
                raise Rollback

    # Assert: no row of any hero table changed (store, tracking, catalog, read
    # tables, ledger), no signal was sent; the caller's own write was kept.
    assert table_snapshot(alias) == before
    assert received == []
    user.refresh_from_db(using=alias)
    assert user.first_name == ("kept" if how == "inner_savepoint" else "")
    # Nothing of the rolled-back decisions is remembered: they are made again.
    assert hero.achievements.unlock("score_changed", user=user, points=1_000) == [
        Outcome("points", 3, 1)
    ]
    if mode == "async":
        call_command("hero_project", "--once", "--timeout", "60", stdout=io.StringIO())
    verify_passes()


class Broken(Exception):
    pass


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("failure", ["python", "database"])
def test_a_failure_inside_heros_work_undoes_only_that_in_the_callers_transaction(
    backend: Backend,
    make_user: Any,
    received: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    from hero.projections.ledger import LedgerEntries

    # Arrange: a user who holds one achievement; the ledger's read model
    # fails once its rows are due, after the event and the holding were
    # written (PostgreSQL: queued in the savepoint's pipeline).
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    before = table_snapshot(backend.alias)
    received.clear()

    def write(self: Any, cursor: Any, changes: Any, users: Any) -> None:
        if failure == "python":
            raise Broken
        # Refused where it is sent, or at the end of the pipeline.
        cursor.execute("SELECT 1 FROM hero_no_such_table")

    # Act: in the caller's transaction, a write of the caller's, the failing
    # award (caught), another write of the caller's, the commit.
    alias = backend.alias
    with monkeypatch.context() as patched:
        patched.setattr(LedgerEntries, "write", write)
        with transaction.atomic(using=alias):
            user.first_name = "before"
            user.save(using=alias)
            with pytest.raises(Exception) as raised:
                hero.achievements.unlock("score_changed", user=user, points=1_000)
            user.last_name = "after"
            user.save(using=alias)

    # Assert: hero's work left nothing and sent nothing; both of the caller's
    # writes were kept; the award is decided again, and the store verifies.
    assert isinstance(raised.value, Broken) == (failure == "python")
    assert table_snapshot(alias) == before
    assert received == []
    user.refresh_from_db(using=alias)
    assert (user.first_name, user.last_name) == ("before", "after")
    assert hero.achievements.unlock("score_changed", user=user, points=1_000) == [
        Outcome("points", 3, 1)
    ]
    verify_passes()


# SIGKILL part-way ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_a_process_killed_inside_its_transaction_of_unlocks_leaves_nothing(
    backend: Backend,
) -> None:
    # Arrange: 120 users; one of them already holds an achievement.
    users = make_users(backend.alias, 120)
    hero.achievements.unlock("reports", user=users[0], level=1)
    before = table_snapshot(backend.alias)

    with children() as started:
        # Act: a child unlocks for every user in one transaction.atomic(), and
        # is killed with SIGKILL after the 80th, before it commits.
        child = started.start(
            backend.alias,
            "batch",
            '{"users": %s, "halfway": 80}' % [u.pk for u in users],
        )
        line = child.expect("HALFWAY", timeout=120)
        child.kill()

    # Assert: the child had written events in its transaction, none survived.
    assert int(line.split()[1]) > 80
    assert table_snapshot(backend.alias) == before
    verify_passes()
    # The store is not left locked: the next unlock goes through, from scratch.
    assert hero.achievements.unlock("reports", user=users[1], level=3) == [
        Outcome("awards_first", 3, None)
    ]
    assert hero.achievements.unlock("reports", user=users[0], level=2) == [
        Outcome("awards_first", 2, 1)
    ]
    verify_passes()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_hero_rebuild_killed_part_way_resumes_to_the_clean_result(
    backend: Backend, settings: Any
) -> None:
    # Arrange: 3,000 events (250 users, 3 achievements, levels 1 to 4), written
    # with projections off so that the read tables are empty.
    settings.HERO_PROJECTIONS = "async"
    users = make_users(backend.alias, 250)
    events = seed_store(
        backend.alias, users, ["points", "awards_first", "night_owl"], 4
    )
    assert StoredEvent.objects.using(backend.alias).count() == events == 3_000
    last = StoredEvent.objects.using(backend.alias).latest("id").id

    with children() as started:
        # Act: a rebuild in batches of 10, killed with SIGKILL once batches are
        # committed and before it has finished.
        first = started.manage(backend.alias, "hero_rebuild", "--batch-size", "10")
        wait_until(
            lambda: (
                tracking(backend.alias).get("holdings@hero", 0) > 0
                or first.process.poll() is not None
            ),
            timeout=120,
            what="the rebuild to commit a batch",
        )
        first.kill()
        positions = tracking(backend.alias)
        assert "holdings@hero#rebuild" in positions, first.output()  # killed part-way
        assert 0 < positions["holdings@hero"] < last
        assert 0 < positions["ledger@hero"] < last

        # ... and run again, to the end.
        second = started.manage(backend.alias, "hero_rebuild", "--batch-size", "10")
        assert second.wait(timeout=240) == 0, second.output()

    # Assert: it resumed, and gives what a clean rebuild gives.
    assert "resumed holdings, ledger" in second.output()
    resumed = read_tables(backend.alias)
    assert len(resumed["holdings"]) == 750 and len(resumed["ledger"]) == 3_000
    call_command("hero_rebuild", stdout=io.StringIO())
    assert read_tables(backend.alias) == resumed
    verify_passes()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_hero_project_killed_in_a_backlog_catches_up_when_run_again(
    backend: Backend, settings: Any
) -> None:
    # Arrange: a backlog written in async mode: 3,000 events on SQLite, 600 on
    # PostgreSQL (where the worker, one transaction per event, is slower).
    settings.HERO_PROJECTIONS = "async"
    users = make_users(backend.alias, 250 if backend.name == "sqlite" else 50)
    events = seed_store(
        backend.alias, users, ["points", "awards_first", "night_owl"], 4
    )
    last = StoredEvent.objects.using(backend.alias).latest("id").id

    with children() as started:
        # Act: the worker is killed with SIGKILL part-way through the backlog ...
        worker = started.manage(backend.alias, "hero_project", HERO_PROJECTIONS="async")
        wait_until(
            lambda: (
                max(tracking(backend.alias).values(), default=0) > 0
                or worker.process.poll() is not None
            ),
            timeout=120,
            what="the worker to apply an event",
            every=0.002,
        )
        worker.kill()
        positions = tracking(backend.alias)
        # It had applied part of the backlog, not all of it.
        assert (
            min(positions.get(k, 0) for k in ("holdings@hero", "ledger@hero")) < last
        ), (positions, worker.output())
        assert verify(backend.alias).differences == []  # behind, but not wrong

        # ... and run again with --once.
        again = started.manage(
            backend.alias,
            "hero_project",
            "--once",
            "--timeout",
            "120",
            HERO_PROJECTIONS="async",
        )
        assert again.wait(timeout=180) == 0, again.output()

    # Assert: caught up, every event applied exactly once.
    assert tracking(backend.alias) == {"holdings@hero": last, "ledger@hero": last}
    tables = read_tables(backend.alias)
    assert len(tables["holdings"]) == 3 * len(users) and len(tables["ledger"]) == events
    verify_passes()


# The database cannot be reached -------------------------------------------------


def test_unlock_with_the_database_down_raises_a_clear_error_and_reports_nothing(
    down_alias: str, settings: Any, received: list[Any], django_db_blocker: Any
) -> None:
    # Arrange: the store is set to a database that is not there. The user is a
    # saved one as far as hero can tell (it has a pk); no other database is
    # opened (pytest-django refuses access to the test databases here).
    from django.contrib.auth import get_user_model

    user = get_user_model()(pk=4242, username="ghost")
    settings.HERO_DATABASE = down_alias

    # Act: unlock, revoke and history.
    started = time.monotonic()
    with django_db_blocker.unblock():
        with pytest.raises(OperationalError) as unlock_error:
            hero.achievements.unlock("reports", user=user, level=2)
        with pytest.raises(OperationalError):
            hero.achievements.revoke(user, "awards_first", reason="test")
        # history() reads the catalog through the ORM first: Django's error.
        with pytest.raises((OperationalError, DjangoOperationalError)):
            hero.achievements.history(user)

    # Assert: eventsourcing's OperationalError naming the database, at once;
    # no outcome returned, no signal sent.
    assert time.monotonic() - started < 15
    message = str(unlock_error.value)
    assert message.startswith(f"Database {down_alias!r}: ")
    assert any(
        words in message
        for words in ("unable to open database file", "connection failed")
    ), message
    assert received == []


def end_the_connection(backend: Backend, connection: Any) -> None:
    """Have the server end ``connection`` from another session."""
    config = django_settings.DATABASES[backend.alias]
    if backend.name == "postgres":
        pid = connection.connection.info.backend_pid
        with psycopg.connect(
            host="127.0.0.1",
            port=config.get("PORT") or 5432,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        return
    import MySQLdb

    thread_id = connection.connection.thread_id()
    admin = MySQLdb.connect(
        host="127.0.0.1", port=int(config.get("PORT") or 3306), user=config["USER"]
    )
    try:
        admin.cursor().execute(f"KILL {int(thread_id)}")
    finally:
        admin.close()


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_between_calls_fails_one_call_clearly_then_recovers(
    backend: Backend, make_user: Any, received: list[Any]
) -> None:
    if backend.name == "sqlite":
        pytest.skip("needs a server that can end the connection")
    # Arrange: hero's connection is open; the server then ends it.
    user = make_user()
    connection = connections[backend.alias]
    connection.ensure_connection()
    end_the_connection(backend, connection)

    # Act: the next unlock uses the dead connection.
    with pytest.raises(PersistenceError) as error:
        hero.achievements.unlock("reports", user=user, level=1)

    # Assert: a persistence error naming the database; nothing reported.
    assert str(error.value).startswith(f"Database {backend.alias!r}: ")
    assert received == []
    # As at the end of a request, Django drops the broken connection; the next
    # call reconnects, and nothing was recorded by the failed one.
    connection.close_if_unusable_or_obsolete()
    assert hero.achievements.unlock("reports", user=user, level=1) == [
        Outcome("awards_first", 1, None)
    ]
    assert len(received) == 1
    verify_passes()


# A deadlock the database breaks -----------------------------------------------


class _DeadlockCause(Exception):
    """What a driver's deadlock error says (PostgreSQL's SQLSTATE)."""

    sqlstate = "40P01"


def deadlocked_first(calls: list[int], *, translated: bool = False) -> Any:
    """A stand-in for the ledger's step inside its transaction that fails the
    first time as a deadlock the database broke, then does what it does; with
    ``translated``, as the store's own statements raise it (eventsourcing's
    error, caused by Django's)."""
    from eventsourcing.persistence import OperationalError

    from hero.ledger import Ledger

    original = Ledger._place_triggers

    def place(self: Any, pending: list[Any]) -> None:
        calls.append(len(pending))
        if len(calls) == 1:
            try:
                raise DjangoOperationalError("deadlock detected") from _DeadlockCause()
            except DjangoOperationalError as error:
                if translated:
                    raise OperationalError(f"Database: {error}") from error
                raise
        original(self, pending)

    return place


def assert_decided_again(
    backend: Backend, calls: list[int], outcomes: Any, received: list[Any]
) -> None:
    """After a first attempt lost to a deadlock: decided twice, one award in the
    store, one signal, and the store verifies."""
    assert calls == [1, 1]
    assert outcomes == [Outcome("awards_first", 1, None)]
    assert StoredEvent.objects.using(backend.alias).count() == 1
    assert len(received) == 1
    verify_passes()


@pytest.mark.django_db(transaction=True)
def test_a_writer_that_loses_a_deadlock_decides_and_writes_again(
    backend: Backend, make_user: Any, received: list[Any]
) -> None:
    from unittest import mock

    # Arrange: the first attempt is rolled back to break a deadlock.
    user = make_user()
    calls: list[int] = []
    with mock.patch("hero.ledger.Ledger._place_triggers", deadlocked_first(calls)):
        # Act
        outcomes = hero.achievements.unlock("reports", user=user, level=1)

    # Assert: decided and written again, once; one signal; the store verifies.
    assert_decided_again(backend, calls, outcomes, received)


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_in_the_stores_own_statements_in_the_callers_transaction_is_retried(
    backend: Backend, make_user: Any, received: list[Any]
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL writers meet in a deadlock and keep the caller's")
    from unittest import mock

    # Arrange: a deadlock as the store's statements raise it (eventsourcing's
    # error), in a savepoint of the caller's transaction.
    user = make_user()
    calls: list[int] = []
    patched = mock.patch(
        "hero.ledger.Ledger._place_triggers", deadlocked_first(calls, translated=True)
    )

    # Act
    with patched, transaction.atomic(using=backend.alias):
        outcomes = hero.achievements.unlock("reports", user=user, level=1)

    # Assert: decided and written again, once, in the caller's transaction.
    assert_decided_again(backend, calls, outcomes, received)


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_that_ended_the_callers_transaction_on_mysql_is_raised(
    backend: Backend, make_user: Any, received: list[Any]
) -> None:
    if backend.name != "mysql":
        pytest.skip("only InnoDB ends the whole transaction on a deadlock")
    from unittest import mock

    # Arrange: the caller's transaction, which InnoDB would end on a deadlock.
    user = make_user()
    calls: list[int] = []
    patched = mock.patch("hero.ledger.Ledger._place_triggers", deadlocked_first(calls))

    # Act: hero must not carry on as if the caller's earlier work were there.
    with patched, pytest.raises(DjangoOperationalError, match="deadlock"):
        with transaction.atomic(using=backend.alias):
            hero.achievements.unlock("reports", user=user, level=1)

    # Assert: tried once, nothing recorded, nothing reported.
    assert calls == [1]
    assert not StoredEvent.objects.using(backend.alias).exists()
    assert received == []
