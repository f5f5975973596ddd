"""hero's event mapper gives back exactly what eventsourcing's own mapper gives."""

from __future__ import annotations

import io
import os
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
)
from eventsourcing.utils import Environment

from hero import achievements
from hero.events import UserAchievement, user_achievement_id
from hero.ledger import Ledger, get_ledger
from hero.mapping import EventMapper
from tests.conftest import Backend
from tests.test_events import UNLOCKED_V1


def plain_mapper(ledger: Ledger) -> Mapper[UUID]:
    """eventsourcing's own mapper, with the transcodings the ledger registers."""
    transcoder = JSONTranscoder()
    ledger.register_transcodings(transcoder)
    return Mapper(transcoder=transcoder)


def as_compared(event: Any) -> tuple[type, dict[str, Any]]:
    return type(event), vars(event)


@pytest.mark.django_db
def test_every_kind_of_event_decodes_as_eventsourcings_mapper_decodes_it(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    # Arrange: one event of every kind hero records, and an event stored with
    # version 1 of the Unlocked schema (before awarded_at).
    settings.HERO_RECORD_TRIGGERS = True
    user = make_user()
    achievements.unlock("score_changed", user=user, points=100, note={"a": [1, None]})
    achievements.unlock("score_changed", user=user, points=1000)
    achievements.unlock("chapter_read", user=user, chapters=2)
    achievements.revoke(user, "points", reason="test")
    old_id = user_achievement_id(str(make_user().pk), "points")
    ledger = get_ledger()
    ledger.recorder.insert_events(
        [
            StoredEvent(
                old_id,
                1,
                "hero:UserAchievement.Unlocked",
                UNLOCKED_V1 % {b"id": old_id.hex.encode(), b"user": b"1"},
            )
        ]
    )

    # Act: decode the rows as a rebuild reads them, and the stored events as
    # eventsourcing reads them.
    rows = ledger.recorder.select_rows(start=None, limit=100)
    decoded = ledger.decode_rows(rows)
    notifications = ledger.recorder.select_notifications(start=None, limit=100)
    expected = [plain_mapper(ledger).to_domain_event(n) for n in notifications]

    # Assert: the same classes and attributes, positions included.
    assert isinstance(ledger.mapper, EventMapper)
    assert [p for p, _ in decoded] == [n.id for n in notifications]
    assert [as_compared(e) for _, e in decoded] == [as_compared(e) for e in expected]
    kinds = {type(e).__name__ for _, e in decoded}
    assert kinds >= {"Unlocked", "LevelUpgraded", "Progressed", "Revoked", "Triggered"}
    upcast = decoded[-1][1]
    assert isinstance(upcast, UserAchievement.Unlocked)
    assert upcast.awarded_at == upcast.timestamp  # added by the upcast
    # The aggregate's own reads go through the same mapper.
    assert ledger.repository.get(old_id).level == 2


def test_a_value_of_an_unknown_type_is_a_clear_error() -> None:
    ledger = Ledger("default")
    state = (
        b'{"timestamp":{"_type_":"no_such_type","_data_":"x"},"user_pk":"1",'
        b'"class_version":2}'
    )
    with pytest.raises(MapperDeserialisationError) as raised:
        ledger.mapper.to_domain_event(
            StoredEvent(UUID(int=1), 3, "hero:UserAchievement.Unlocked", state)
        )
    message = str(raised.value)
    assert "hero:UserAchievement.Unlocked" in message
    assert "no_such_type" in message and "originator_version 3" in message


def test_with_a_cipher_eventsourcings_mapper_does_the_work() -> None:
    ledger = Ledger("default")
    key = AESCipher.create_key(16)
    cipher = AESCipher(Environment(env={"CIPHER_KEY": key}))
    mapper = EventMapper(transcoder=ledger.mapper.transcoder, cipher=cipher)
    aggregate = UserAchievement.start("5", "points")
    aggregate.award(1, trigger="score_changed", state={"points": 10})
    (event,) = aggregate.collect_events()

    stored = mapper.to_stored_event(event)

    assert b"score_changed" not in stored.state  # encrypted
    assert as_compared(mapper.to_domain_event(stored)) == as_compared(event)


def test_a_mapper_of_the_sites_own_is_used_as_configured(settings: Any) -> None:
    settings.HERO_STORE_OPTIONS = {"MAPPER_TOPIC": "eventsourcing.persistence:Mapper"}
    ledger = Ledger("default")
    aggregate = UserAchievement.start("5", "points")
    aggregate.award(1, trigger="score_changed", state={"points": 10})
    (event,) = aggregate.collect_events()
    stored = ledger.mapper.to_stored_event(event)
    row = (7, stored.originator_id.hex, 1, stored.topic, memoryview(stored.state))

    ((position, decoded),) = ledger.decode_rows([row])

    assert type(ledger.mapper) is Mapper
    assert position == 7 and as_compared(decoded) == as_compared(event)


ENVIRONMENT_MEANT_FOR_OTHERS = {
    "PERSISTENCE_MODULE": "eventsourcing.popo",
    "MAPPER_TOPIC": "eventsourcing.persistence:Mapper",
    "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
    "HERO_COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
    "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
    "HERO_CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
    "CIPHER_KEY": AESCipher.create_key(16),
    "APPLICATION_RECORDER_TOPIC": "eventsourcing.popo:POPOApplicationRecorder",
    "HERO_APPLICATION_RECORDER_TOPIC": "eventsourcing.popo:POPOApplicationRecorder",
    "TRACKING_RECORDER_TOPIC": "eventsourcing.popo:POPOTrackingRecorder",
    "IS_SNAPSHOTTING_ENABLED": "y",
}


@pytest.mark.django_db(transaction=True)
def test_the_process_environment_never_configures_the_store(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: an award written before, and the environment of a process that
    # runs other eventsourcing applications too.
    from django.core.management import call_command

    from hero import ledger as ledger_module
    from hero.models import StoredEvent as StoredEventModel

    user = make_user()
    achievements.unlock("score_changed", user=user, points=100)
    for key, value in ENVIRONMENT_MEANT_FOR_OTHERS.items():
        monkeypatch.setitem(os.environ, key, value)
    monkeypatch.setattr(
        ledger_module, "_ledgers", {}
    )  # made afresh, as in a new process

    # Act: another award, its history read, and a worker run.
    achievements.unlock("score_changed", user=user, points=5000)
    history = achievements.history(user)
    call_command("hero_project", "--once", "--timeout", "30", stdout=io.StringIO())

    # Assert: hero's own mapper and store, and plain JSON in the store.
    ledger = get_ledger()
    assert type(ledger.mapper) is EventMapper
    assert ledger.mapper.compressor is None and ledger.mapper.cipher is None
    assert ledger.snapshots is None
    assert type(ledger.recorder).__module__ == "hero.store.recorders"
    assert [entry.level for entry in history] == [2, 3]
    states = StoredEventModel.objects.using(backend.alias).values_list(
        "state", flat=True
    )
    assert all(bytes(state).startswith(b"{") for state in states)
