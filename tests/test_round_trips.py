"""Round trips to the PostgreSQL server: an award waits for the server twice,
in the caller's transaction or in one of hero's own, and the chain is linked
after the caller's commit in two (hero.store.postgres)."""

from __future__ import annotations

import functools
import logging
import threading
from contextlib import nullcontext
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections, transaction

import hero
from hero.events import Outcome, Progress
from hero.models import AchievementUnlocked, LedgerEntry, StoredEvent
from hero.projections.base import read_changes
from hero.projections.inline import read_models
from tests.conftest import Backend
from tests.databases import reopened_with

pytestmark = pytest.mark.django_db(transaction=True)


def exchanges(trace: str) -> int:
    """How often the client waited for the server: each turn from messages
    the client sent ("F") to messages it received ("B")."""
    turns, sending = 0, False
    for line in trace.splitlines():
        direction = line.split("\t", 1)[0]
        if direction == "F":
            sending = True
        elif direction == "B" and sending:
            turns, sending = turns + 1, False
    return turns


def traced(backend: Backend, tmp_path: Path, call: Any) -> int:
    connection = connections[backend.alias]
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    path = tmp_path / "trace.txt"
    with path.open("w") as file:
        pgconn.trace(file.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            call()
        finally:
            pgconn.untrace()
    return exchanges(path.read_text())


def level_held(backend: Backend, user: Any, achievement_id: str = "points") -> int:
    return int(
        AchievementUnlocked.objects.using(backend.alias)
        .get(user=user, achievement_id=achievement_id)
        .level
    )


def assert_verified() -> None:
    out = StringIO()
    call_command("hero_verify", stdout=out)
    assert "match" in out.getvalue(), out.getvalue()


@pytest.fixture
def new_user(backend: Backend, make_user: Any) -> Any:
    """On PostgreSQL, a user who holds nothing, in a store whose read models'
    positions exist (the store's first award writes them)."""
    if backend.name != "postgres":
        pytest.skip("round trips are counted on PostgreSQL")
    hero.achievements.unlock("score_changed", user=make_user(), points=10)
    return make_user()


def test_a_first_award_and_an_upgrade_wait_for_the_server_twice(
    backend: Backend, new_user: Any, tmp_path: Path
) -> None:
    user = new_user

    first = traced(
        backend,
        tmp_path,
        lambda: hero.achievements.unlock("score_changed", user=user, points=10),
    )
    upgrade = traced(
        backend,
        tmp_path,
        lambda: hero.achievements.unlock("score_changed", user=user, points=100),
    )

    assert (first, upgrade) == (2, 2)
    assert level_held(backend, user) == 2
    assert LedgerEntry.objects.using(backend.alias).filter(user_id=user.pk).count() == 2
    assert StoredEvent.objects.using(backend.alias).count() == 3


def test_an_award_in_the_callers_transaction_waits_twice_and_links_in_two(
    backend: Backend, new_user: Any, tmp_path: Path
) -> None:
    # Arrange: the caller's transaction has begun (its BEGIN sent with a
    # statement of the caller's).
    user = new_user
    atomic = transaction.atomic(using=backend.alias)
    atomic.__enter__()
    try:
        connections[backend.alias].cursor().execute("SELECT 1")

        # Act: an award in it, then the caller's commit.
        award = traced(
            backend,
            tmp_path,
            lambda: hero.achievements.unlock("score_changed", user=user, points=10),
        )
    except BaseException as error:
        atomic.__exit__(type(error), error, error.__traceback__)
        raise
    commit = traced(backend, tmp_path, lambda: atomic.__exit__(None, None, None))

    # Assert: the award waited for the server twice (the savepoint, the
    # user's row, the positions and the aggregate's read; the writes with the
    # savepoint's release), the commit once, and the linking after it twice;
    # every event is linked.
    assert (award, commit) == (2, 3)
    assert StoredEvent.objects.using(backend.alias).filter(chain=None).count() == 0
    assert level_held(backend, user) == 1


@pytest.mark.parametrize("where", ["autocommit", "in_transaction"])
def test_a_version_taken_at_the_commit_is_decided_again(
    backend: Backend,
    make_user: Any,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another writer records the same aggregate's next version between this
    call's read and its commit: the refusal comes with the commit (in the
    caller's transaction: at the end of the savepoint's pipeline), and the
    call decides again and leaves the connection (and the caller's
    transaction) usable."""
    from hero.ledger import Ledger

    if backend.name != "postgres":
        pytest.skip("the pipelined transaction is PostgreSQL's")

    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    record = Ledger.record
    raced = []

    def upgrade_elsewhere() -> None:
        try:
            hero.achievements.unlock("score_changed", user=user, points=1_000)
        finally:
            connections.close_all()

    def record_after_a_rival(self: Any, aggregates: Any) -> Any:
        if not raced:
            raced.append(True)
            # The rival: another connection's upgrade of the same aggregate.
            rival = threading.Thread(target=upgrade_elsewhere)
            rival.start()
            rival.join()
        return record(self, aggregates)

    monkeypatch.setattr(Ledger, "record", record_after_a_rival)
    caplog.set_level(logging.WARNING)
    if where == "autocommit":
        outcomes = hero.achievements.unlock("score_changed", user=user, points=100)
    else:
        with transaction.atomic(using=backend.alias):
            outcomes = hero.achievements.unlock("score_changed", user=user, points=100)
            user.first_name = "kept"
            user.save(using=backend.alias)
        user.refresh_from_db(using=backend.alias)
        assert user.first_name == "kept"

    assert outcomes == []  # decided again: level 3 is held, 100 points earn less
    assert raced == [True]
    # A lost race is no one's warning: psycopg's about the pipeline it ended
    # is not logged.
    assert [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ] == []
    assert level_held(backend, user) == 3
    # The first award and the rival's upgrade; the connection works on.
    assert list(
        StoredEvent.objects.using(backend.alias).values_list(
            "originator_version", flat=True
        )
    ) == [1, 2]


def test_djangos_query_log_shows_heros_transaction_and_savepoint(
    backend: Backend, make_user: Any
) -> None:
    from django.test.utils import CaptureQueriesContext

    if backend.name != "postgres":
        pytest.skip("the pipelined transaction and savepoint are PostgreSQL's")
    connection = connections[backend.alias]
    user, other = make_user(), make_user()

    # Act: an award outside any transaction, and one inside the caller's.
    with CaptureQueriesContext(connection) as alone:
        hero.achievements.unlock("score_changed", user=user, points=10)
    with transaction.atomic(using=backend.alias):
        with CaptureQueriesContext(connection) as inside:
            hero.achievements.unlock("score_changed", user=other, points=10)

    # Assert: what hero sends itself around its statements is logged with
    # them, as Django's own BEGIN and COMMIT are; Django made no savepoint.
    logged = [query["sql"] for query in alone.captured_queries]
    assert logged[0] == "BEGIN" and logged[-1] == "COMMIT", logged
    logged = [query["sql"] for query in inside.captured_queries]
    assert logged[0] == "SAVEPOINT hero_write", logged
    assert logged[-1] == "RELEASE SAVEPOINT hero_write", logged
    assert sum("SAVEPOINT" in statement for statement in logged) == 2, logged


def marks_held(backend: Backend) -> int:
    """How many positions this connection's transaction holds marked."""
    from hero.store.ordering import LOCK_CLASS

    with connections[backend.alias].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND pid = pg_backend_pid() AND classid::bigint = %s "
            "AND objid::bigint <> 0",
            [LOCK_CLASS & 0xFFFFFFFF],
        )
        (count,) = cursor.fetchone()
    return int(count)


def test_a_repeat_this_process_has_seen_only_reads(
    backend: Backend, new_user: Any
) -> None:
    from django.test.utils import CaptureQueriesContext

    user = new_user
    hero.achievements.unlock("score_changed", user=user, points=10)

    with CaptureQueriesContext(connections[backend.alias]) as repeat:
        outcomes = hero.achievements.unlock("score_changed", user=user, points=10)

    # Level 1 was seen held: the aggregate's read alone, nothing reserved.
    assert outcomes == []
    assert len(repeat.captured_queries) == 1, repeat.captured_queries
    assert repeat.captured_queries[0]["sql"].startswith("SELECT originator_id")


@pytest.mark.parametrize("where", ["autocommit", "in_transaction"])
def test_a_repeat_this_process_has_not_seen_keeps_nothing_it_reserved(
    backend: Backend, new_user: Any, tmp_path: Path, where: str
) -> None:
    from hero.ledger import get_ledger

    user = new_user
    hero.achievements.unlock("score_changed", user=user, points=10)
    events = StoredEvent.objects.using(backend.alias).count()
    # As in another process, which has not seen the user's level.
    get_ledger()._levels_seen.clear()

    def repeat() -> Any:
        return hero.achievements.unlock("score_changed", user=user, points=10)

    if where == "autocommit":
        waits = traced(backend, tmp_path, repeat)
        held = marks_held(backend)
    else:
        with transaction.atomic(using=backend.alias):
            connections[backend.alias].cursor().execute("SELECT 1")
            waits = traced(backend, tmp_path, repeat)
            # The savepoint was rolled back: no mark holds followers back
            # until the caller's commit.
            held = marks_held(backend)
            hero.achievements.unlock("score_changed", user=user, points=100)
            held_by_an_award = marks_held(backend)
        assert held_by_an_award == 1

    # Reserved with the read (one wait), then let go of (the second).
    assert waits == 2
    assert held == 0
    assert StoredEvent.objects.using(backend.alias).count() == events + (
        1 if where == "in_transaction" else 0
    )
    assert_verified()


def test_a_decision_that_read_past_its_reserved_positions_writes_after_what_it_read(
    backend: Backend, new_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Positions are reserved before the aggregate is read: another writer
    may reserve after them and commit the aggregate's next event before the
    read. The event decided on what was read must come after it in the store,
    not at the position reserved first."""
    import time

    from hero.events import UserAchievement
    from hero.ledger import Ledger

    user = new_user
    original = Ledger.user_achievement
    raced: list[bool] = []

    def unlock_elsewhere() -> None:
        try:
            # Once the call's position is reserved (its mark is held), unlock
            # level 1 on another connection, and commit.
            with connections[backend.alias].cursor() as cursor:
                for _ in range(500):
                    cursor.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid <> pg_backend_pid() AND objid::bigint <> 0"
                    )
                    if cursor.fetchone()[0]:
                        break
                    time.sleep(0.01)
            hero.achievements.unlock("score_changed", user=user, points=10)
        finally:
            connections.close_all()

    def read_after_a_rival(
        self: Ledger, user_pk: str, achievement_id: str, read: Any = None
    ) -> Any:
        if not raced:
            raced.append(True)
            rival = threading.Thread(target=unlock_elsewhere)
            rival.start()
            rival.join()
        return original(self, user_pk, achievement_id, read)

    monkeypatch.setattr(Ledger, "user_achievement", read_after_a_rival)
    outcomes = hero.achievements.unlock("score_changed", user=user, points=100)

    # Decided on the rival's level 1, stored after it.
    assert outcomes == [Outcome("points", 2, 1)]
    aggregate = UserAchievement.start(str(user.pk), "points").id
    stored = list(
        StoredEvent.objects.using(backend.alias)
        .filter(originator_id=aggregate)
        .order_by("originator_version")
        .values_list("originator_version", "id")
    )
    assert [version for version, _ in stored] == [1, 2]
    assert stored[0][1] < stored[1][1], stored
    assert_verified()


def test_with_snapshots_an_award_reads_before_it_reserves(
    backend: Backend,
    new_user: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    """Through snapshots the aggregate is read without its events' positions,
    which positions reserved ahead must come after: the reads go first (the
    snapshot's, then the events after it), then the positions, then the
    writes, four waits for the server."""
    from hero import ledger as ledger_module

    settings.HERO_STORE_OPTIONS = {"IS_SNAPSHOTTING_ENABLED": "y"}
    monkeypatch.setattr(ledger_module, "_ledgers", {})  # made afresh
    assert ledger_module.get_ledger().snapshots is not None

    waits = traced(
        backend,
        tmp_path,
        lambda: hero.achievements.unlock("score_changed", user=new_user, points=10),
    )

    assert waits == 4
    assert level_held(backend, new_user) == 1


@pytest.mark.parametrize("hint", ["right", "wrong"])
def test_a_first_award_of_two_achievements_waits_twice_and_once_more_for_a_position_not_reserved(
    backend: Backend, new_user: Any, tmp_path: Path, hint: str
) -> None:
    from hero.ledger import get_ledger

    user = new_user
    if hint == "wrong":
        # The hint says night_owl is held (it is not): one position reserved
        # ahead, for two events.
        get_ledger()._levels_seen.note(str(user.pk), "night_owl", 1)

    waits = traced(
        backend,
        tmp_path,
        lambda: hero.achievements.unlock(
            "score_changed", user=user, points=10, night=True
        ),
    )

    # The positions and both aggregates' read in the first wait, the writes
    # and the commit in the last; a position not reserved ahead takes one
    # more between them. Both events are stored in order.
    assert waits == (2 if hint == "right" else 3)
    rows = list(
        StoredEvent.objects.using(backend.alias)
        .filter(originator_version=1)
        .order_by("id")
        .values_list("id", flat=True)
    )
    assert len(rows) == 3 and rows == sorted(set(rows))
    held = set(
        AchievementUnlocked.objects.using(backend.alias)
        .filter(user=user)
        .values_list("achievement_id", "level")
    )
    assert held == {("points", 1), ("night_owl", 1)}
    assert_verified()


@pytest.mark.parametrize("where", ["autocommit", "in_transaction"])
def test_calls_that_write_nothing_leave_a_sites_prepared_statements_intact(
    backend: Backend, make_user: Any, where: str
) -> None:
    if backend.name != "postgres":
        pytest.skip("psycopg's prepared statements")
    # Arrange: the connection opened again as a site that has psycopg prepare
    # every statement has it, and a new reader.
    alias = backend.alias
    block = (
        functools.partial(transaction.atomic, using=alias)
        if where == "in_transaction"
        else nullcontext
    )
    with reopened_with(alias, server_side_binding=True, prepare_threshold=0):
        user = make_user()
        outcomes = []
        for chapters in (2, 2, 1, 2, 3, 4, 4, 5):
            # Act: reports of progress, some of which change nothing (those
            # end in a ROLLBACK, or a ROLLBACK TO SAVEPOINT, sent in hero's
            # pipeline), each sending the statements of the one before.
            with block():
                outcomes.append(
                    hero.achievements.unlock(
                        "chapter_read", user=user, chapters=chapters
                    )
                )

        # Assert: none refused for a statement psycopg believed prepared.
        assert outcomes == [
            [Progress("bookworm", 2, 0, 5)],
            [],
            [],
            [],
            [Progress("bookworm", 3, 2, 5)],
            [Progress("bookworm", 4, 3, 5)],
            [],
            [Progress("bookworm", 5, 4, 5), Outcome("bookworm", 1, None)],
        ]
        assert_verified()


def test_a_worker_applies_an_event_waiting_for_the_server_three_times(
    backend: Backend, new_user: Any, tmp_path: Path, settings: Any
) -> None:
    # Arrange: an award the read models have not applied (async).
    settings.HERO_PROJECTIONS = "async"
    hero.achievements.unlock("score_changed", user=new_user, points=10)
    (change,) = read_changes(0, 100)[-1:]
    holdings = read_models(backend.alias, ["holdings"])[0]

    # Act: a worker applies it.
    waits = traced(backend, tmp_path, lambda: holdings.apply([change]))

    # Assert: the positions read (with BEGIN), the users that still exist, and
    # the rows written with the position and COMMIT.
    assert waits == 3
    assert level_held(backend, new_user) == 1
