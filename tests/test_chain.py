"""The store's hash chain: any edit, deletion or reordering of events is found."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

import hero
from hero.models import StoredEvent
from hero.store import verify_chain
from hero.store.chain import link_committed
from tests.conftest import Backend


def some_events(make_user: Any) -> list[int]:
    """Six events from three users; their positions in the store."""
    for name in ("ann", "bob", "cid"):
        user = make_user(name)
        hero.achievements.unlock("score_changed", user=user, points=100)
        hero.achievements.unlock("score_changed", user=user, points=1_000)
    # What their commits do on PostgreSQL (the test's transaction never commits).
    link_committed()
    return list(StoredEvent.objects.order_by("id").values_list("id", flat=True))


def verify_output() -> str:
    out = io.StringIO()
    with pytest.raises(CommandError, match="difference"):
        call_command("hero_verify", stdout=out)
    return out.getvalue()


def sql(backend: Backend, statement: str, params: list[Any]) -> None:
    with connections[backend.alias].cursor() as cursor:
        cursor.execute(statement, params)


@pytest.mark.django_db
def test_an_untouched_store_is_intact(backend: Backend, make_user: Any) -> None:
    positions = some_events(make_user)
    check = verify_chain()
    assert check.intact and check.checked == len(positions) == 6
    assert check.head == bytes(StoredEvent.objects.order_by("-id").first().chain)  # type: ignore[union-attr]


@pytest.mark.django_db
def test_an_edited_event_is_found(backend: Backend, make_user: Any) -> None:
    positions = some_events(make_user)
    third = StoredEvent.objects.get(id=positions[2])
    # The level, which is stored plain (the state passed is sealed).
    forged = bytes(third.state).replace(b'"level":2', b'"level":3')
    assert forged != bytes(third.state)
    sql(
        backend,
        "UPDATE hero_stored_event SET state = %s WHERE id = %s",
        [forged, positions[2]],
    )

    assert verify_chain().broken_at == positions[2]
    assert f"hash chain is broken at position {positions[2]}" in verify_output()


@pytest.mark.django_db
def test_a_deleted_event_is_found(backend: Backend, make_user: Any) -> None:
    positions = some_events(make_user)
    sql(backend, "DELETE FROM hero_stored_event WHERE id = %s", [positions[3]])

    # The event after the gap no longer links to its predecessor.
    assert verify_chain().broken_at == positions[4]


@pytest.mark.django_db
def test_swapped_events_are_found(backend: Backend, make_user: Any) -> None:
    positions = some_events(make_user)
    a, b = (StoredEvent.objects.get(id=p) for p in positions[1:3])
    # Swap the two rows' contents (each keeps its chain value and position).
    for target, source in ((a, b), (b, a)):
        sql(
            backend,
            "UPDATE hero_stored_event SET originator_id = %s, originator_version = %s, "
            "topic = %s, state = %s WHERE id = %s",
            [
                source.originator_id.hex
                if backend.name == "sqlite"
                else source.originator_id,
                source.originator_version + 1000,  # keeps the unique key free meanwhile
                source.topic,
                bytes(source.state),
                target.id,
            ],
        )
    sql(
        backend,
        "UPDATE hero_stored_event SET originator_version = originator_version - 1000 "
        "WHERE originator_version > 1000",
        [],
    )

    assert verify_chain().broken_at == positions[1]


@pytest.mark.django_db
def test_a_forged_chain_value_is_found(backend: Backend, make_user: Any) -> None:
    positions = some_events(make_user)
    sql(
        backend,
        "UPDATE hero_stored_event SET chain = %s WHERE id = %s",
        [bytes(32), positions[0]],
    )
    assert verify_chain().broken_at == positions[0]


@pytest.mark.django_db
def test_hero_status_shows_the_head_to_record_elsewhere(
    backend: Backend, make_user: Any
) -> None:
    some_events(make_user)
    link_committed()  # what the commits do on PostgreSQL
    out = io.StringIO()
    call_command("hero_status", stdout=out)
    # As hero_verify prints it, and as its --anchor takes it.
    check = verify_chain()
    head = f"{check.head_position}:{check.head.hex()}"  # type: ignore[union-attr]
    assert f"chain head:       {head}\n" in out.getvalue()


@pytest.mark.django_db
def test_links_written_one_at_a_time_and_many_at_once_are_link(
    backend: Backend,
) -> None:
    from uuid import uuid4

    from eventsourcing.persistence import StoredEvent as Stored

    from hero.ledger import get_ledger
    from hero.store.chain import GENESIS, link

    # Arrange: single-event inserts (on PostgreSQL the link is computed in SQL)
    # around a multi-event one (computed in Python there), with a non-ASCII topic.
    recorder = get_ledger().recorder

    def event(version: int, topic: str = "hero:UserAchievement.Unlocked") -> Stored:
        return Stored(uuid4(), version, topic, b'{"k":"\\u00e9"}')

    written = [
        event(1),
        event(2, "h\u00e9ro:x"),
        event(1),
        event(3),
        event(9_000_000_000),
    ]

    # Act
    recorder.insert_events(written[:1])
    recorder.insert_events(written[1:2])
    recorder.insert_events(written[2:4])
    recorder.insert_events(written[4:])
    link_committed()  # what the commits do on PostgreSQL

    # Assert: each stored link is link() over the one before.
    rows = StoredEvent.objects.order_by("id").values_list("chain", flat=True)
    previous = GENESIS
    expected = []
    for stored in written:
        previous = link(previous, stored)
        expected.append(previous)
    assert [bytes(chain) for chain in rows] == expected
    assert verify_chain().intact


@pytest.mark.django_db
def test_an_event_edited_before_it_is_linked_is_found(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    # Arrange: events committed but not linked yet (this transaction is open).
    for name in ("ann", "bob"):
        hero.achievements.unlock("score_changed", user=make_user(name), points=100)
    rows = list(StoredEvent.objects.order_by("id").values_list("id", "chain", "seal"))
    assert all(chain is None and seal for _, chain, seal in rows)
    assert verify_chain().intact

    # Act: one is edited before anybody links it.
    sql(
        backend,
        "UPDATE hero_stored_event SET state = %s WHERE id = %s",
        [b'{"edited": true}', rows[1][0]],
    )

    # Assert: its seal no longer holds; linking stops before it.
    assert verify_chain().broken_at == rows[1][0]
    assert link_committed() == 1
    assert verify_chain().broken_at == rows[1][0]


@pytest.mark.django_db(transaction=True)
def test_events_a_writer_committed_but_did_not_link_are_linked_by_hero_verify(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    from unittest import mock

    from django.db import transaction

    # Arrange: a writer that dies between its commit and linking its events.
    user = make_user()
    with mock.patch("hero.store.recorders.link_after_commit", return_value=0):
        with transaction.atomic(using=backend.alias):
            hero.achievements.unlock("score_changed", user=user, points=100)
    assert StoredEvent.objects.filter(chain__isnull=True).exists()

    # Act
    out = io.StringIO()
    call_command("hero_verify", stdout=out)

    # Assert: every event is linked now, and the chain verifies.
    assert not StoredEvent.objects.filter(chain__isnull=True).exists()
    check = verify_chain()
    last = StoredEvent.objects.order_by("id").last()
    assert last is not None and check.intact and check.head_position == last.id
    assert check.head == bytes(last.chain)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("projections", ["inline", "async"])
@pytest.mark.parametrize("inside", [True, False], ids=["callers", "own"])
def test_events_committed_are_linked_by_whoever_follows(
    backend: Backend, make_user: Any, projections: str, inside: bool
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    from contextlib import nullcontext

    from django.db import transaction
    from django.test import override_settings

    with override_settings(HERO_PROJECTIONS=projections):
        # Act: three awards, each in a request's transaction or in hero's own.
        for name in ("ann", "bob", "cid"):
            atomic = transaction.atomic(using=backend.alias)
            with atomic if inside else nullcontext():
                hero.achievements.unlock(
                    "score_changed", user=make_user(name), points=100
                )
        unlinked = list(
            StoredEvent.objects.filter(chain__isnull=True)
            .order_by("id")
            .values_list("id", flat=True)
        )
        before = io.StringIO()
        call_command("hero_status", stdout=before)
        # Act: the worker that keeps the read tables catches up.
        call_command("hero_project", "--once", "--timeout", "30", stdout=io.StringIO())

    # Assert: inline, a writer in the caller's transaction linked its events at
    # the caller's commit, and one in hero's own the events before its own on
    # the way (the last is left); async, writers leave them all to the worker.
    events = list(StoredEvent.objects.order_by("id").values_list("id", flat=True))
    if projections == "async":
        assert unlinked == events
    else:
        assert unlinked == ([] if inside else events[-1:])
    assert len(events) == 3
    assert f"to be linked:     {len(unlinked)}\n" in before.getvalue()
    assert not StoredEvent.objects.filter(chain__isnull=True).exists()
    check = verify_chain()
    assert check.intact and check.head_position == events[-1]
    after = io.StringIO()
    call_command("hero_status", stdout=after)
    assert "to be linked:     0\n" in after.getvalue()
    assert check.head is not None
    assert f"chain head:       {events[-1]}:{check.head.hex()}\n" in after.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_linking_fails_logs_it_and_links_at_its_next_look(
    backend: Backend, make_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    from unittest import mock

    from django.db import OperationalError, transaction
    from django.test import override_settings

    with override_settings(HERO_PROJECTIONS="async"):
        with transaction.atomic(using=backend.alias):
            hero.achievements.unlock("score_changed", user=make_user(), points=100)
        failing = mock.patch(
            "hero.projections.worker.link_committed",
            side_effect=OperationalError("server closed the connection"),
        )
        # Act: the worker's look fails to link.
        with failing, caplog.at_level("WARNING", logger="hero.projections"):
            call_command(
                "hero_project", "--once", "--timeout", "30", stdout=io.StringIO()
            )

        # Assert: the worker caught up all the same, and said what failed.
        assert "linking the chain failed" in caplog.text
        assert StoredEvent.objects.filter(chain__isnull=True).exists()

        # Act: its next look links.
        call_command("hero_project", "--once", "--timeout", "30", stdout=io.StringIO())

    # Assert
    assert not StoredEvent.objects.filter(chain__isnull=True).exists()
    assert verify_chain().intact


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "backlog", [False, True], ids=["no-stats", "stats-of-a-backlog"]
)
def test_a_linker_reads_a_few_rows_however_many_events_are_linked(
    backend: Backend, make_user: Any, backlog: bool
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    from django.test import override_settings

    from hero.store.chain import LINK_BATCH
    from hero.store.ordering import LINKER_LOCK

    # Arrange: 400 awards, all linked but the last few: each linking the one
    # before it (no statistics of the table gathered), or left to the worker
    # and linked once the table's statistics said most events wait, the
    # plans made from them and kept (the server keeps a function's plans
    # after five calls).
    with override_settings(HERO_PROJECTIONS="async" if backlog else "inline"):
        for n in range(400):
            hero.achievements.unlock(
                "score_changed", user=make_user(f"u{n}"), points=100
            )
    with connections[backend.alias].cursor() as cursor:
        if backlog:
            cursor.execute("ANALYZE hero_stored_event")
            link_committed(limit=399)
            for _ in range(6):
                cursor.execute(
                    "SELECT count(*) FROM hero_unlinked(%s, true, false, 0, NULL)",
                    [LINKER_LOCK],
                )
        assert StoredEvent.objects.filter(chain__isnull=True).count() == 1

        # Act: find the events to link, as every linker does.
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
            "SELECT * FROM hero_unlinked(%s, true, false, %s, NULL)",
            [LINKER_LOCK, LINK_BATCH],
        )
        plan = cursor.fetchone()[0][0]["Plan"]

    # Assert: the last link and the one event after it, read by position,
    # in a few pages, not a page per event linked before them.
    assert plan["Actual Rows"] == 2
    assert plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] < 20


def unlinked_reads(queries: Any) -> list[tuple[str, str]]:
    """The calls of ``hero_unlinked`` in a capture of Django's query log: the
    most events each asked for, and the position it said was linked."""
    calls = [re.search(r"hero_unlinked\((.*)\)", q["sql"]) for q in queries]
    found = [call.group(1).split(", ") for call in calls if call is not None]
    return [(arguments[3], arguments[4]) for arguments in found]


@pytest.mark.django_db(transaction=True)
def test_a_backlog_is_linked_a_batch_at_a_time(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    from django.test import override_settings
    from django.test.utils import CaptureQueriesContext

    # Arrange: fourteen awards left to the worker, as a stopped worker leaves
    # them, and batches of four.
    with override_settings(HERO_PROJECTIONS="async"):
        for n in range(14):
            hero.achievements.unlock(
                "score_changed", user=make_user(f"u{n}"), points=100
            )
        events = list(StoredEvent.objects.order_by("id").values_list("id", flat=True))
        assert StoredEvent.objects.filter(chain__isnull=True).count() == 14
        monkeypatch.setattr("hero.store.chain.LINK_BATCH", 4)
        connection = connections[backend.alias]

        # Act: link three at most (what the linking after a caller's commit
        # asks for, a batch).
        with CaptureQueriesContext(connection) as first:
            linked = link_committed(limit=3)

        # Assert: the first three, read three at most.
        assert linked == 3
        unlinked = StoredEvent.objects.filter(chain__isnull=True).order_by("id")
        assert list(unlinked.values_list("id", flat=True)) == events[3:]
        assert unlinked_reads(first) == [("3", "NULL")]

        # Act: link them all, but stop between two batches.
        with CaptureQueriesContext(connection) as stopped:
            linked = link_committed(until=lambda: True)

        # Assert: one batch was linked, the next four.
        assert linked == 4
        assert list(unlinked.values_list("id", flat=True)) == events[7:]
        assert unlinked_reads(stopped) == [("4", "NULL")]

        # Act: the worker links the rest, in batches.
        with CaptureQueriesContext(connection) as rest:
            call_command(
                "hero_project", "--once", "--timeout", "30", stdout=io.StringIO()
            )

    # Assert: seven left, read four at a time, each batch in a transaction of
    # its own (four, then the three left, found after the last of the four);
    # the chain verifies to the last.
    assert unlinked_reads(rest) == [("4", "NULL"), ("4", str(events[10]))]
    commits = [q["sql"] for q in rest.captured_queries if q["sql"] == "COMMIT"]
    assert len(commits) == 2
    assert not StoredEvent.objects.filter(chain__isnull=True).exists()
    check = verify_chain()
    assert check.intact and check.head_position == events[-1]


@pytest.mark.django_db(transaction=True)
def test_a_writer_links_a_few_events_before_its_own_on_the_way(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    from unittest import mock

    from django.db import transaction

    # Arrange: five events whose writers died before linking them, and
    # writers that link two at most on the way.
    with mock.patch("hero.store.recorders.link_after_commit", return_value=0):
        for n in range(5):
            with transaction.atomic(using=backend.alias):
                hero.achievements.unlock(
                    "score_changed", user=make_user(f"u{n}"), points=100
                )
    events = list(StoredEvent.objects.order_by("id").values_list("id", flat=True))
    monkeypatch.setattr("hero.store.recorders.LINKED_ON_THE_WAY", 2)

    # Act: an award in a transaction of hero's own.
    hero.achievements.unlock("score_changed", user=make_user("last"), points=100)

    # Assert: it linked the first two on the way; the rest, its own included,
    # are left to the next linker, which links them all.
    unlinked = StoredEvent.objects.filter(chain__isnull=True).order_by("id")
    assert list(unlinked.values_list("id", flat=True))[:3] == events[2:]
    assert unlinked.count() == 4
    assert link_committed() == 4
    assert verify_chain().intact
