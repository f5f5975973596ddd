"""The chain is keyed: an event forged without the site's secret fails
hero_verify at its position; keys rotate the way SECRET_KEY does; a kept head
catches a truncated store."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from hashlib import sha256
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import override_settings
from eventsourcing.persistence import StoredEvent as Stored

import hero
from hero.models import StoredEvent
from hero.store import verify_chain
from hero.store.chain import (
    GENESIS,
    _signed,
    _SQLiteChain,
    derive_key,
    link,
    link_committed,
    seal,
)
from tests.conftest import Backend

ROOT = Path(__file__).resolve().parent.parent


def unkeyed_link(previous: bytes | None, event: Stored) -> bytes:
    """The link that anyone could compute without the key (plain SHA-256 over
    the fields the chain covers): what a forger who can write to the database
    but does not hold the key would store."""
    signed = _signed(
        event.originator_id, event.originator_version, event.topic, event.state
    )
    return sha256((previous or GENESIS) + signed).digest()


# A process that has hero's code and the database, but another secret: it
# appends an award through hero's own store, linked with the key it can derive.
FORGER = """
import json, sys
import django
from django.conf import settings

database = json.loads(sys.argv[1])
settings.configure(
    DATABASES={"default": database},
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "hero"],
    SECRET_KEY="not the site's secret",
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()
from hero.events import UserAchievement
from hero.ledger import Ledger

ledger = Ledger("default")
aggregate = ledger.user_achievement(sys.argv[2], "points")
aggregate.award(4, trigger="forged", state={})
ledger.record([aggregate])
print(ledger.recorder.max_notification_id())
"""


def verify_output(*args: str) -> str:
    out = io.StringIO()
    with pytest.raises(CommandError, match="difference"):
        call_command("hero_verify", *args, stdout=out)
    return out.getvalue()


def forge_in_another_process(backend: Backend, user_pk: Any) -> int:
    database = dict(connections[backend.alias].settings_dict)
    database = {
        key: database[key]
        for key in ("ENGINE", "NAME", "HOST", "PORT", "USER", "PASSWORD", "OPTIONS")
        if key in database
    }
    result = subprocess.run(
        [sys.executable, "-c", FORGER, json.dumps(database), str(user_pk)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.django_db(transaction=True)
def test_an_award_forged_by_a_process_without_the_secret_fails_at_its_position(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: a genuine award, then one appended by another process that has
    # hero's code and the database but another secret.
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=100)
    forged = forge_in_another_process(backend, user.pk)

    # Act
    output = verify_output()

    # Assert: found at its own position, and the store's history shows it was there.
    assert StoredEvent.objects.filter(id=forged).exists()
    assert f"hash chain is broken at position {forged}" in output
    assert verify_chain().broken_at == forged


@pytest.mark.django_db
def test_an_event_linked_by_the_public_formula_fails(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: an append whose link is computed as an unkeyed chain would be.
    hero.achievements.unlock("score_changed", user=make_user(), points=100)
    link_committed()  # what the commit does on PostgreSQL
    last = StoredEvent.objects.order_by("-id").first()
    assert last is not None
    forged = Stored(uuid4(), 1, "hero:UserAchievement.Unlocked", b"{}")
    row = StoredEvent.objects.create(
        originator_id=forged.originator_id,
        originator_version=1,
        topic=forged.topic,
        state=forged.state,
        chain=unkeyed_link(bytes(last.chain), forged),
    )
    # Act, Assert
    assert verify_chain().broken_at == row.id


@pytest.mark.django_db
def test_a_row_at_position_zero_or_below_is_inside_the_walk(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: a genuine store, and a row slipped in below position 1.
    hero.achievements.unlock("score_changed", user=make_user(), points=100)
    forged = Stored(uuid4(), 1, "hero:UserAchievement.Unlocked", b"{}")
    StoredEvent.objects.create(
        id=-1,
        originator_id=forged.originator_id,
        originator_version=1,
        topic=forged.topic,
        state=forged.state,
        chain=unkeyed_link(GENESIS, forged),
    )
    # Act, Assert: verify walks it, and finds it.
    assert verify_chain().broken_at == -1


@pytest.mark.django_db
def test_a_rotated_key_verifies_with_the_old_one_as_fallback_then_rekey(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: events linked under the old secret, then more under the new one.
    user = make_user()
    with override_settings(SECRET_KEY="old secret"):
        hero.achievements.unlock("score_changed", user=user, points=100)
        hero.achievements.unlock("score_changed", user=user, points=1_000)
        link_committed()  # what the commits do on PostgreSQL
    rotated = override_settings(
        SECRET_KEY="new secret", SECRET_KEY_FALLBACKS=["old secret"]
    )
    with rotated:
        hero.achievements.unlock("score_changed", user=user, points=10_000)
        link_committed()
        positions = list(
            StoredEvent.objects.order_by("id").values_list("id", flat=True)
        )

        # Act: verify with the fallback.
        check = verify_chain()
        out = io.StringIO()
        call_command("hero_verify", stdout=out)

    # Assert: each stretch is reported with the key that verified it.
    assert check.intact
    assert [(s.first, s.last, s.key.label) for s in check.stretches] == [
        (positions[0], positions[1], "fallback 1"),
        (positions[2], positions[2], "current"),
    ]
    assert (
        f"positions {positions[0]}-{positions[1]} verified with the fallback 1 key"
        in out.getvalue()
    )

    # Without the old key the old stretch fails; re-keyed, it needs no fallback.
    with override_settings(SECRET_KEY="new secret"):
        assert verify_chain().broken_at == positions[0]
    with rotated:
        call_command("hero_rekey", stdout=io.StringIO())
    with override_settings(SECRET_KEY="new secret"):
        check = verify_chain()
    assert check.intact and [s.key.label for s in check.stretches] == ["current"]


@pytest.mark.django_db
def test_rekey_refuses_a_broken_chain_and_changes_nothing(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: an edited event.
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=100)
    hero.achievements.unlock("score_changed", user=user, points=1_000)
    link_committed()  # what the commits do on PostgreSQL
    first = StoredEvent.objects.order_by("id").first()
    assert first is not None
    StoredEvent.objects.filter(id=first.id).update(state=b'{"edited": true}')
    before = list(StoredEvent.objects.order_by("id").values_list("chain", flat=True))

    # Act, Assert
    with pytest.raises(CommandError, match=f"broken at position {first.id}"):
        call_command("hero_rekey", stdout=io.StringIO())
    after = list(StoredEvent.objects.order_by("id").values_list("chain", flat=True))
    assert [bytes(c) for c in after] == [bytes(c) for c in before]


@pytest.mark.django_db
def test_a_kept_head_catches_a_truncated_store(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: the head printed by hero_verify, kept elsewhere.
    user = make_user()
    hero.achievements.unlock("score_changed", user=user, points=100)
    hero.achievements.unlock("score_changed", user=user, points=1_000)
    out = io.StringIO()
    call_command("hero_verify", stdout=out)
    (line,) = [x for x in out.getvalue().splitlines() if x.startswith("chain head:")]
    head = line.split()[2]
    call_command("hero_verify", "--anchor", head, stdout=io.StringIO())

    # Act: the last event removed (and the read tables rebuilt to match).
    StoredEvent.objects.order_by("-id").first().delete()  # type: ignore[union-attr]
    call_command("hero_rebuild", stdout=io.StringIO())

    # Assert: the chain alone cannot tell; the kept head does.
    assert verify_chain().intact
    assert "does not hold the kept link" in verify_output("--anchor", head)


def test_a_malformed_anchor_is_a_clear_error() -> None:
    for value in ("", "12", "x:00", "0:" + "00" * 32, "3:abcd", "-1:" + "00" * 32):
        with pytest.raises(CommandError, match="POSITION:LINK"):
            call_command("hero_verify", f"--anchor={value}", stdout=io.StringIO())


def test_the_key_is_derived_from_the_secret_with_a_salt_of_heros_own() -> None:
    event = Stored(uuid4(), 1, "t", b"{}")
    with override_settings(SECRET_KEY="one"):
        one = link(GENESIS, event)
    with override_settings(SECRET_KEY="two"):
        two = link(GENESIS, event)
    with override_settings(HERO_CHAIN_KEY="explicit", SECRET_KEY="one"):
        explicit = link(GENESIS, event)
    assert len({one, two, explicit}) == 3
    assert one == link(GENESIS, event, derive_key("one"))
    assert derive_key("one") != b"one"


def test_links_and_seals_keep_their_bytes() -> None:
    """Stores made by earlier releases verify only while the MACs cover the same
    bytes: these values were computed when the MAC was fed a field at a time."""
    event = Stored(
        UUID("12345678-9abc-def0-1234-56789abcdef0"),
        3,
        "hero:UserAchievement.Unlocked",
        b'{"level":1}',
    )
    key = bytes(range(32))
    first = "aedfdb68e603391b638d5332e181ba6079040f9b3c771096c562f14f8b1ae493"
    after = "34cc2d2a7e23bebe49206859e135586ad65f3e1dd24a73d133d199ada9e9025b"
    sealed = "846e16ff9fb992e4abf1c9a379f7b087f7b0f5453eaf1ca9b4424ea2a1002250"
    assert link(None, event, key).hex() == first
    assert link(bytes(range(32, 64)), event, key).hex() == after
    assert seal(42, event, key).hex() == sealed
    # The aggregate's id as each database returns it: the same links.
    for originator in (event.originator_id.hex, str(event.originator_id)):
        again = Stored(originator, 3, event.topic, event.state)
        assert link(None, again, key).hex() == first
    # SQLite computes the link inside its INSERT, from the id as stored there.
    chain = _SQLiteChain()
    chain.key, chain.previous = key, bytes(range(32, 64))
    assert (
        chain.next(event.originator_id.hex, 3, event.topic, event.state).hex() == after
    )
