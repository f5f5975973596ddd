"""Turning hero's domain events into stored records and back.

eventsourcing's :class:`~eventsourcing.persistence.Mapper` and
:class:`~eventsourcing.persistence.JSONTranscoder`, with two changes:

* the transcoder also encodes subclasses of the types it knows (freezegun's
  ``datetime``, say), and
* reading events back skips the work that is the same for every event of a
  topic (finding the class, its version, how its originator id is typed) by
  keeping it per topic, and takes the rows of a query as they come, without a
  ``StoredEvent`` or ``Notification`` object for each. A rebuild decodes every
  event in the store, so this is most of its reading cost.

Events come back exactly as eventsourcing's own mapper gives them: the same
class, the same attributes, older class versions upcast the same way. With a
cipher or a compressor configured, eventsourcing's mapper does the work.

Personal fields (``PERSONAL`` on an event class) are stored only sealed: an
event that :class:`hero.sealing.Sealer` sealed is written with its ``sealed``
member and without the plain fields, and comes back the same way (the fields
are opened when first read). The stored state stays plain JSON either way,
so the ledger's copy in SQL reads ``sealed`` as it reads the other members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    TranscodingNotRegisteredError,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

from hero.events.personal import personal_fields

Event = DomainEventProtocol[UUID]


class SubclassAwareTranscoder(JSONTranscoder):
    """JSON transcoder that also encodes subclasses of registered types (a
    ``datetime`` subclass such as freezegun's is encoded as a datetime)."""

    def __init__(self) -> None:
        super().__init__()
        self._decode_json = self.decoder.decode

    def _encode_obj(self, o: Any) -> dict[str, Any]:
        cls = type(o)
        if cls not in self.types:
            for base in cls.__mro__[1:]:
                if base in self.types:
                    self.types[cls] = self.types[base]
                    break
        return super()._encode_obj(o)

    def _decode_obj(self, d: dict[str, Any]) -> Any:
        # Called for every JSON object decoded: the common case (not an
        # encoded value) returns at the first test.
        if len(d) != 2 or "_type_" not in d or "_data_" not in d:
            return d
        try:
            transcoding = self.names[d["_type_"]]
        except (KeyError, TypeError):
            raise TranscodingNotRegisteredError(
                f"Data serialized with name '{d['_type_']}' is not deserializable. "
                "Please register a custom transcoding for this type."
            ) from None
        return transcoding.decode(d["_data_"])

    def decode(self, data: bytes) -> Any:
        return self._decode_json(data.decode("utf8"))


class EventMapper(Mapper[UUID]):
    """eventsourcing's mapper, reading events back with per-topic facts kept."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Whether stored state is plain JSON (no cipher, no compressor): what
        #: readers of the stored JSON in SQL rely on.
        self.plain_json = (
            self.cipher is None
            and self.compressor is None
            and isinstance(self.transcoder, JSONTranscoder)
        )
        # (topic, type of the stored originator id) -> (class, class version,
        # originator id converter)
        self._topics: dict[
            tuple[str, type], tuple[type[Any], int, Callable[[Any], Any]]
        ] = {}

    def to_stored_event(self, domain_event: Event) -> StoredEvent:
        """The stored record of an event: its state as JSON, personal fields
        only in their sealed form once the event was sealed."""
        event_state = dict(vars(domain_event))
        if isinstance(event_state.get("sealed"), str):
            # The fields that were sealed (those that hold something) are
            # stored only in ``sealed``.
            for name in personal_fields(type(domain_event)):
                if event_state.get(name):
                    del event_state[name]
        originator_id = event_state.pop("originator_id")
        originator_version = event_state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            event_state["class_version"] = class_version
        stored_state = self.transcoder.encode(event_state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=get_topic(type(domain_event)),
            state=stored_state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Event:
        return self.decode(
            stored_event.originator_id,
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
        )

    def decode(
        self,
        originator_id: UUID | str,
        originator_version: int,
        topic: str,
        state: bytes | memoryview,
    ) -> Event:
        """The domain event of one stored row (its columns as a query gives them)."""
        if type(state) is not bytes:
            state = bytes(state)
        if not self.plain_json:
            return super().to_domain_event(
                StoredEvent(originator_id, originator_version, topic, state)
            )
        try:
            cls, class_version, convert_id = self._topics[(topic, type(originator_id))]
        except KeyError:
            cls = resolve_topic(topic)
            class_version = getattr(cls, "class_version", 1)
            # mypy takes a union of classes for unhashable (each alone passes).
            convert_id = find_id_convertor(cls, type(originator_id))  # type: ignore[arg-type]
            self._topics[(topic, type(originator_id))] = cls, class_version, convert_id
        try:
            event_state: dict[str, Any] = self.transcoder.decode(state)
        except Exception as error:
            raise MapperDeserialisationError(
                f"Failed to deserialise state of stored event with topic '{topic}', "
                f"originator_id '{originator_id}' and originator_version "
                f"{originator_version}: {error}"
            ) from error
        event_state["originator_id"] = convert_id(originator_id)
        event_state["originator_version"] = originator_version
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", event_state)
        return event  # type: ignore[no-any-return]
