"""Forgetting a user: hero.achievements.forget() and deleting a user.

What the site passed for the user is sealed under keys of the user's
aggregates (and, in events stored before those, of the user's own); forgetting
deletes them, so nothing of it can be read back from any of hero's tables,
while the store keeps that awards happened and its chain still verifies.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
import uuid
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.management import call_command
from django.db import connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils.timezone import now

import hero
from hero import AchievementBase, AchievementUnlocked, sealing
from hero.audit import known_achievement_ids
from hero.events import UserAchievement
from hero.events.aggregates import trigger_log_id, user_achievement_id
from hero.models import (
    AchievementCount,
    AchievementProgress,
    LedgerEntry,
    StoredEvent,
    UserKey,
)
from hero.models import AchievementUnlocked as Holding
from hero.projections.verify import verify
from hero.store.chain import link_committed, verify_chain
from tests.conftest import Backend, stored_domain_events


@pytest.fixture
def nice_answer(isolated_registry: Any) -> type[AchievementBase]:
    """A repeatable achievement whose keys name the answer."""

    @hero.achievements.register
    class NiceAnswer(AchievementBase):
        id = "nice_answer"
        title = "Nice answer"
        events = ["answer_scored"]
        repeatable = True

        def unlock(self, **state: Any) -> AchievementUnlocked | None:
            return AchievementUnlocked(level=1, key=f"answer:{state['answer']}")

    return NiceAnswer


def keys_held(alias: str, user: Any) -> int:
    """How many events of the user's aggregates hold a data key."""
    pk = str(user.pk)
    aggregates = [user_achievement_id(pk, a) for a in known_achievement_ids(alias)]
    aggregates.append(trigger_log_id(pk))
    held = StoredEvent.objects.using(alias).filter(data_key__isnull=False)
    return held.filter(originator_id__in=aggregates).count()


def sealed_under_the_users_own_key(alias: str, user: Any, values: Any) -> str:
    """A payload as events stored before each achievement had its own key
    were sealed: under a key of the user's, made now in ``hero_user_key``
    (wrapped with the current chain key)."""
    pk = str(user.pk)
    raw = os.urandom(32)
    UserKey.objects.using(alias).create(
        user_pk=pk, wrapped=sealing._wrap(raw, sealing._aad(pk)), created_at=now()
    )
    nonce = os.urandom(12)
    sealed = AESGCM(raw).encrypt(nonce, json.dumps(values).encode(), sealing._aad(pk))
    return sealing.USER_FORMAT + base64.b64encode(nonce + sealed).decode()


def hero_tables(alias: str) -> list[str]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        names = connection.introspection.table_names(cursor)
    return sorted(name for name in names if name.startswith("hero_"))


def tables_holding(alias: str, marker: str) -> list[str]:
    """Every (table.column) of hero's tables where ``marker`` can be read, as
    text or in bytes (JSON, binary state, any column type)."""
    found = []
    connection = connections[alias]
    quote = connection.ops.quote_name
    needle = marker.encode()
    for table in hero_tables(alias):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {quote(table)}")
            columns = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, memoryview):
                        value = bytes(value)
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    if needle in raw:
                        found.append(f"{table}.{column}")
    return sorted(set(found))


def everything_a_site_passes(user: Any, marker: str) -> None:
    """Each kind of personal value a site can give hero for a user, each
    carrying ``marker``: unlock state, progress state, a repeatable award's
    key, revocation and grant reasons and actors, the trigger log."""
    hero.achievements.unlock("score_changed", user=user, points=10, note=marker)
    hero.achievements.unlock("score_changed", user=user, points=100, note=marker)
    hero.achievements.unlock("chapter_read", user=user, chapters=2, note=marker)
    hero.achievements.unlock("answer_scored", user=user, answer=f"{marker}-1")
    hero.achievements.unlock("answer_scored", user=user, answer=f"{marker}-2")
    hero.achievements.revoke(
        user, "nice_answer", key=f"answer:{marker}-1", reason=marker, actor=marker
    )
    hero.achievements.revoke(user, "points", reason=f"why {marker}", actor=marker)
    hero.achievements.grant(user, "points", level=1, reason=marker, actor=marker)


@pytest.mark.django_db(transaction=True)
def test_forgetting_leaves_nothing_the_site_passed_in_any_hero_table(
    backend: Backend, make_user: Any, settings: Any, nice_answer: Any
) -> None:
    # Arrange: a user with every kind of personal value recorded, and another
    # user whose values must stay readable.
    settings.HERO_RECORD_TRIGGERS = True
    marker, other_marker = f"m{uuid.uuid4().hex}", f"o{uuid.uuid4().hex}"
    user, other = make_user("ann"), make_user("bob")
    everything_a_site_passes(user, marker)
    everything_a_site_passes(other, other_marker)
    before = hero.achievements.history(user)
    assert any(e.state.get("note") == marker for e in before)
    assert any(e.reason == marker and e.actor == marker for e in before)
    assert any(e.key == f"answer:{marker}-2" for e in before)
    # Sealed: not in plain text in any table even before forgetting.
    assert tables_holding(backend.alias, marker) == []

    # Act
    hero.achievements.forget(user)

    # Assert: no column of any hero table holds the marker, in any form the
    # API would give it back either.
    assert tables_holding(backend.alias, marker) == []
    after = hero.achievements.history(user)
    assert after and all(e.forgotten for e in after)
    assert marker not in repr(after)
    assert marker not in repr(stored_domain_events(backend.alias))
    # Every key of the user's went (the trigger log's too); the other's stay.
    assert keys_held(backend.alias, user) == 0
    assert any(
        e.state.get("note") == other_marker for e in hero.achievements.history(other)
    )
    # The store still says awards happened, and the chain verifies.
    kinds = [e.kind for e in after]
    assert kinds.count("unlocked") >= 2 and "forgotten" in kinds
    assert verify_chain().intact
    # The other user's values are untouched.
    others = hero.achievements.history(other)
    assert any(e.state.get("note") == other_marker for e in others)
    assert not any(e.forgotten for e in others)


@pytest.mark.django_db
def test_forgetting_makes_holdings_progress_and_counts_exact_at_once(
    backend: Backend, make_user: Any, nice_answer: Any
) -> None:
    user, other = make_user(), make_user()
    for someone in (user, other):
        hero.achievements.unlock("score_changed", user=someone, points=100)
        hero.achievements.unlock("chapter_read", user=someone, chapters=2)
        hero.achievements.unlock("answer_scored", user=someone, answer="a")
    holdings = Holding.objects.using(backend.alias)

    forgotten = hero.achievements.forget(user)

    assert forgotten == 3
    assert not holdings.filter(user=user).exists()
    assert holdings.filter(user=other).count() == 2
    assert not AchievementProgress.objects.using(backend.alias).filter(user=user)
    counts = AchievementCount.objects.using(backend.alias).holders()
    assert {key: n for key, n in counts.items() if n} == {
        ("points", 2): 1,
        ("nice_answer", 1): 1,
    }
    assert hero.achievements.levels(user) == {}
    assert not verify(backend.alias).differences
    assert keys_held(backend.alias, user) == 0
    assert keys_held(backend.alias, other) == 3


@pytest.mark.django_db
def test_deleting_a_user_forgets_them_in_the_deleting_transaction(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: two holders of level 2, one of whom leaves.
    user, other = make_user(), make_user()
    for someone in (user, other):
        hero.achievements.unlock("score_changed", user=someone, points=100, why="x")
    pk = user.pk
    counts = AchievementCount.objects.using(backend.alias)

    # Act: the deletion rolls back first, then commits.
    with pytest.raises(RuntimeError), transaction.atomic(using=backend.alias):
        type(user).objects.db_manager(backend.alias).get(pk=pk).delete()
        raise RuntimeError("rolled back")
    assert keys_held(backend.alias, user) == 1
    assert counts.holders(["points"])[("points", 2)] == 2
    user.delete()

    # Assert: counts exact, no rebuild needed, and the ledger keeps that the
    # award happened.
    assert counts.holders(["points"])[("points", 2)] == 1
    assert keys_held(backend.alias, user) == 0
    assert not verify(backend.alias).differences
    kinds = list(
        LedgerEntry.objects.using(backend.alias)
        .filter(user_id=pk)
        .order_by("position")
        .values_list("kind", "payload")
    )
    assert kinds == [("unlocked", ""), ("forgotten", "")]
    out = io.StringIO()
    call_command("hero_verify", stdout=out)
    assert verify_chain().intact


@pytest.mark.django_db
def test_a_forgotten_user_may_earn_again_under_a_new_key(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10, note="old")
    hero.achievements.forget(user)

    hero.achievements.unlock("score_changed", user=user, points=100, note="new")

    entries = hero.achievements.history(user)
    assert [(e.kind, e.forgotten, e.state) for e in entries] == [
        ("unlocked", True, {}),
        ("forgotten", True, {}),
        ("unlocked", False, {"note": "new", "points": 100}),
    ]
    assert hero.achievements.levels(user) == {"points": 2}


@pytest.mark.django_db
def test_forgetting_twice_records_nothing_more(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    assert hero.achievements.forget(user) == 1

    assert hero.achievements.forget(user) == 0

    forgotten = [
        e for e in stored_domain_events() if isinstance(e, UserAchievement.Forgotten)
    ]
    assert len(forgotten) == 1


@pytest.mark.django_db(transaction=True)
def test_forgetting_applies_at_once_with_async_projections(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    # Arrange: the read tables are kept by a worker, which has caught up.
    settings.HERO_PROJECTIONS = "async"
    user, other = make_user(), make_user()
    hero.achievements.unlock("score_changed", user=user, points=100)
    hero.achievements.unlock("score_changed", user=other, points=100)
    call_command("hero_project", "--once", "--timeout", "30", stdout=io.StringIO())
    holdings = Holding.objects.using(backend.alias)
    assert holdings.count() == 2

    # Act: no worker runs after this.
    hero.achievements.forget(user)

    assert list(holdings.values_list("user_id", flat=True)) == [other.pk]
    assert not verify(backend.alias).differences


@pytest.mark.django_db(transaction=True)
def test_aforget_forgets_from_async_code(backend: Backend, make_user: Any) -> None:
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10, note="n")

    # As a view under ASGI calls it (async_to_sync keeps the database work in
    # this thread, whose connection the test database's teardown closes).
    assert async_to_sync(hero.achievements.aforget)(user) == 1

    assert [e.kind for e in hero.achievements.history(user)] == [
        "unlocked",
        "forgotten",
    ]


@pytest.mark.django_db
def test_hero_audit_says_the_user_was_forgotten(
    backend: Backend, make_user: Any
) -> None:
    user = make_user("ann")
    hero.achievements.unlock("score_changed", user=user, points=10, note="secret")
    hero.achievements.forget(user)
    out = io.StringIO()

    call_command("hero_audit", str(user.pk), stdout=out)

    text = out.getvalue()
    assert "This user was forgotten" in text
    assert "(forgotten)" in text
    assert "secret" not in text


@pytest.mark.django_db
def test_rebuild_copies_payloads_sealed_and_keeps_a_forgotten_users_erased(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: one user forgotten, one not.
    user, other = make_user(), make_user()
    hero.achievements.unlock("score_changed", user=user, points=10, note="gone")
    hero.achievements.unlock("score_changed", user=other, points=10, note="kept")
    hero.achievements.forget(user)
    entries = LedgerEntry.objects.using(backend.alias)
    before = dict(entries.values_list("position", "payload"))

    call_command("hero_rebuild", stdout=io.StringIO())

    # The other user's payload comes back as stored (sealed, and it opens);
    # the forgotten user's sealed payload opens with no key.
    after = dict(entries.values_list("position", "payload"))
    other_entry = entries.get(user_id=other.pk)
    assert after[other_entry.position] == before[other_entry.position] != ""
    assert "kept" not in other_entry.payload
    assert hero.achievements.history(other)[0].state == {"note": "kept", "points": 10}
    assert hero.achievements.history(user)[0].state == {}
    assert not verify(backend.alias).differences


@pytest.mark.django_db
def test_rekey_wraps_data_keys_again_so_the_old_secret_can_go(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: state sealed under keys wrapped with the old secret (an
    # achievement's, and the user's own of an older payload).
    user = make_user()
    with override_settings(SECRET_KEY="old secret"):
        hero.achievements.unlock("score_changed", user=user, points=10, note="kept")
        older = sealed_under_the_users_own_key(backend.alias, user, {"key": "k"})
    rotated = override_settings(
        SECRET_KEY="new secret", SECRET_KEY_FALLBACKS=["old secret"]
    )
    with override_settings(SECRET_KEY="new secret"):
        # Without the old secret, the key opens with nothing: as if forgotten.
        assert hero.achievements.history(user)[0].state == {}

    # Act
    out = io.StringIO()
    with rotated:
        call_command("hero_rekey", stdout=out)

    # Assert: with only the new secret, the state opens again.
    assert "Wrapped 2 data keys with the current key." in out.getvalue()
    with override_settings(SECRET_KEY="new secret"):
        assert hero.achievements.history(user)[0].state == {
            "note": "kept",
            "points": 10,
        }
        assert sealing.open_payload(str(user.pk), older) == {"key": "k"}


@pytest.mark.django_db
def test_rewrapping_goes_through_the_events_keys_a_batch_at_a_time(
    backend: Backend, make_user: Any
) -> None:
    users = [make_user() for _ in range(3)]
    with override_settings(SECRET_KEY="old secret"):
        for n, user in enumerate(users):
            hero.achievements.unlock("score_changed", user=user, points=10, note=n)

    with override_settings(
        SECRET_KEY="new secret", SECRET_KEY_FALLBACKS=["old secret"]
    ):
        first = sealing.rewrap_keys(backend.alias, batch_size=2)
        again = sealing.rewrap_keys(backend.alias, batch_size=2)

    assert (first, again) == (3, 0)
    with override_settings(SECRET_KEY="new secret"):
        notes = [hero.achievements.history(u)[0].state["note"] for u in users]
    assert notes == [0, 1, 2]


def test_only_deleting_a_user_is_listened_to() -> None:
    # A pre_delete receiver for every model would keep Django from deleting
    # other models' rows in bulk; hero listens to the user model alone.
    from django.contrib.auth import get_user_model
    from django.db.models.signals import pre_delete

    assert pre_delete.has_listeners(get_user_model())
    assert not pre_delete.has_listeners(AchievementCount)


@pytest.mark.django_db
def test_a_backfill_seals_each_award_under_a_key_of_its_own_aggregate(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    # Arrange: one of three users holds an achievement already, with state.
    had_one, *others = users = [make_user() for _ in range(3)]
    hero.achievements.unlock("score_changed", user=had_one, points=10)
    keyed = StoredEvent.objects.using(backend.alias).filter(data_key__isnull=False)
    before = {bytes(key) for key in keyed.values_list("data_key", flat=True)}

    @hero.achievements.register
    class Founder(AchievementBase):
        id = "founder"
        title = "Founder"
        events = ["never_sent"]

        def unlock(self, **state: Any) -> None:
            return None

        def backfill(self) -> Any:
            return ((user.pk, 1) for user in users)

    # Act: one batch awards all three.
    call_command("hero_backfill", "founder", stdout=io.StringIO())

    # Assert: the earlier key kept, a key made with each new event, and each
    # entry opens under its own.
    founders = [user_achievement_id(str(user.pk), "founder") for user in users]
    made = keyed.filter(originator_id__in=founders)
    assert made.count() == 3
    after = {bytes(key) for key in keyed.values_list("data_key", flat=True)}
    assert before < after and len(after) == 4
    assert not UserKey.objects.using(backend.alias).exists()
    entries = LedgerEntry.objects.using(backend.alias).filter(achievement_id="founder")
    assert entries.count() == 3
    for entry in entries:
        assert entry.personal_values()["state"]["source"]
    hero.achievements.forget(others[0])
    assert keys_held(backend.alias, others[0]) == 0
    unlocked = entries.filter(kind="unlocked")
    assert unlocked.get(user_id=others[0].pk).payload == ""
    assert unlocked.get(user_id=others[1].pk).personal_values()["state"]["source"]


@pytest.mark.django_db
def test_an_aggregates_key_is_stored_by_its_events_own_insert(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    aggregate = user_achievement_id(str(user.pk), "points")
    events = StoredEvent.objects.using(backend.alias).filter(originator_id=aggregate)

    with CaptureQueriesContext(connections[backend.alias]) as first:
        hero.achievements.unlock("score_changed", user=user, points=10, note="a")
    hero.achievements.unlock("score_changed", user=user, points=100, note="b")

    # The key is a column of the first event: no statement of its own, and the
    # upgrade's event is sealed under the same key, which it names.
    assert not [q for q in first.captured_queries if "hero_user_key" in q["sql"]]
    held = list(
        events.order_by("originator_version").values_list("data_key", flat=True)
    )
    assert len(held) == 2 and held[0] is not None and held[1] is None
    sealed = [
        json.loads(bytes(s))["sealed"] for s in events.values_list("state", flat=True)
    ]
    assert [payload[:3] for payload in sealed] == ["21.", "21."]
    assert [e.state for e in hero.achievements.history(user)] == [
        {"note": "a", "points": 10},
        {"note": "b", "points": 100},
    ]


@pytest.mark.django_db
def test_a_key_moved_to_another_aggregates_event_opens_nothing(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: two users' first awards, each with its own key.
    mallory, alice = make_user(), make_user()
    hero.achievements.unlock("score_changed", user=mallory, points=10, note="m")
    hero.achievements.unlock("score_changed", user=alice, points=10, note="a")
    events = StoredEvent.objects.using(backend.alias)
    first = {
        user: events.get(
            originator_id=user_achievement_id(str(user.pk), "points"),
            originator_version=1,
        )
        for user in (mallory, alice)
    }

    # Act: whoever can write the database copies one key over the other.
    events.filter(pk=first[alice].pk).update(data_key=first[mallory].data_key)

    # Assert: the copied key is bound to its own event, so it opens nothing.
    assert hero.achievements.history(alice)[0].state == {}
    assert hero.achievements.history(mallory)[0].state == {"note": "m", "points": 10}


@pytest.mark.django_db
def test_payloads_sealed_under_a_users_own_key_open_until_the_user_is_forgotten(
    backend: Backend, make_user: Any
) -> None:
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=10)
    pk = str(user.pk)
    values = {"state": {"email": "old@example.com"}}
    payload = sealed_under_the_users_own_key(backend.alias, user, values)

    opened = sealing.open_payload(pk, payload)
    hero.achievements.forget(user)

    assert opened == values
    assert sealing.open_payload(pk, payload) is None
    assert not UserKey.objects.using(backend.alias).exists()


@pytest.mark.django_db(transaction=True)
def test_forgetting_in_a_transaction_still_open_keeps_no_linker_waiting(
    backend: Backend, make_user: Any
) -> None:
    if backend.name != "postgres":
        pytest.skip("only PostgreSQL links events after their commit")
    # Arrange: the user's award committed, its event (holding the key) not
    # linked yet; then the user forgotten in a transaction left open.
    user, other = make_user(), make_user()
    with mock.patch("hero.store.recorders.link_after_commit", return_value=0):
        with transaction.atomic(using=backend.alias):
            for someone in (user, other):
                hero.achievements.unlock(
                    "score_changed", user=someone, points=10, note="n"
                )
    forgotten, release = threading.Event(), threading.Event()

    def forget_and_hold() -> None:
        try:
            with transaction.atomic(using=backend.alias):
                hero.achievements.forget(user)
                forgotten.set()
                release.wait(10)
        finally:
            connections[backend.alias].close()

    holder = threading.Thread(target=forget_and_hold)
    holder.start()
    try:
        assert forgotten.wait(10)

        # Act: a linker that does not wait, as after another writer's commit;
        # and another user forgotten meanwhile.
        started = time.monotonic()
        linked = link_committed(backend.alias, wait=False)
        took = time.monotonic() - started
        hero.achievements.forget(other)
        took_to_forget = time.monotonic() - started - took
    finally:
        release.set()
        holder.join()

    # Assert: neither waited for the forgetting transaction (the linker left
    # the linking to the next one); once it ended, everything is linked.
    assert (linked, took < 5, took_to_forget < 5) == (0, True, True)
    assert keys_held(backend.alias, other) == 0
    link_committed(backend.alias)
    assert not StoredEvent.objects.filter(chain__isnull=True).exists()
    assert verify_chain().intact
    assert keys_held(backend.alias, user) == 0


@pytest.mark.django_db(transaction=True)
def test_forgetting_while_others_award_keeps_the_store_and_the_keys_exact(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: twelve users, four of whom are forgotten again and again while
    # three threads award all of them, each award in a transaction of its own.
    users = [make_user() for _ in range(12)]
    leaving, staying = users[:4], users[4:]
    errors: list[BaseException] = []

    def in_a_thread(work: Any) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # reported by the assertion below
                errors.append(error)
            finally:
                connections[backend.alias].close()

        return threading.Thread(target=run)

    def award(chunk: list[Any]) -> None:
        for points in (10, 100, 1_000):
            for user in chunk:
                with transaction.atomic(using=backend.alias):
                    hero.achievements.unlock(
                        "score_changed", user=user, points=points, note=f"n{user.pk}"
                    )

    def forget_again_and_again() -> None:
        for _ in range(3):
            for user in leaving:
                with transaction.atomic(using=backend.alias):
                    hero.achievements.forget(user)

    threads = [in_a_thread(lambda c=users[n::3]: award(c)) for n in range(3)]
    threads.append(in_a_thread(forget_again_and_again))

    # Act
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for user in leaving:  # what they earned after the last forgetting goes too
        hero.achievements.forget(user)

    # Assert
    assert errors == []
    link_committed(backend.alias)
    assert verify_chain().intact
    assert not verify(backend.alias).differences
    for user in leaving:
        assert keys_held(backend.alias, user) == 0
        assert all(e.state == {} for e in hero.achievements.history(user))
    for user in staying:
        assert hero.achievements.levels(user) == {"points": 3}
        assert hero.achievements.history(user)[-1].state["note"] == f"n{user.pk}"
