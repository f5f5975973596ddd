"""The factory eventsourcing asks for hero's recorders (``PERSISTENCE_MODULE``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

from django.conf import settings
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    InfrastructureFactoryError,
    ProcessRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic

from hero.conf import conf
from hero.store.recorders import (
    DjangoAggregateRecorder,
    DjangoApplicationRecorder,
    DjangoProcessRecorder,
    DjangoRecorder,
    DjangoTrackingRecorder,
)
from hero.store.transactions import DjangoDatastore

if TYPE_CHECKING:
    from django.db.models import Model

_Recorder = TypeVar("_Recorder", bound=DjangoRecorder)


class DjangoFactory(InfrastructureFactory[DjangoTrackingRecorder]):
    """Constructs hero's recorders on the database named by ``HERO_DATABASE``.

    The environment key ``DJANGO_DATABASE`` overrides that setting for one
    application. ``CREATE_TABLE`` is accepted and ignored: migrations own the schema.
    """

    DJANGO_DATABASE = "DJANGO_DATABASE"

    aggregate_recorder_class = DjangoAggregateRecorder
    application_recorder_class = DjangoApplicationRecorder
    tracking_recorder_class = DjangoTrackingRecorder
    process_recorder_class = DjangoProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        alias = self.env.get(self.DJANGO_DATABASE) or conf.HERO_DATABASE
        if alias not in settings.DATABASES:
            known = ", ".join(repr(a) for a in settings.DATABASES) or "none"
            msg = (
                f"hero's event store is set to use database {alias!r}, which is not "
                f"in settings.DATABASES (it has: {known}). Set HERO_DATABASE to one "
                "of those aliases."
            )
            raise InfrastructureFactoryError(msg)
        self.datastore = DjangoDatastore(alias)

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        # Lazy: the store is importable before Django has loaded the models.
        from hero.models import StoredEvent as StoredEventModel
        from hero.models import StoredSnapshot

        models: dict[str, type[Model]] = {
            "events": StoredEventModel,
            "snapshots": StoredSnapshot,
        }
        if purpose not in models:
            msg = (
                f"hero's event store has no table for {purpose!r} records; "
                f"it stores {' and '.join(models)}."
            )
            raise InfrastructureFactoryError(msg)
        return self.aggregate_recorder_class(self.datastore, models[purpose])

    def application_recorder(self) -> ApplicationRecorder:
        cls = self._recorder_class(
            self.APPLICATION_RECORDER_TOPIC, self.application_recorder_class
        )
        return cls(self.datastore)

    def tracking_recorder(
        self, tracking_recorder_class: type[DjangoTrackingRecorder] | None = None
    ) -> DjangoTrackingRecorder:
        cls = tracking_recorder_class or self._recorder_class(
            self.TRACKING_RECORDER_TOPIC, self.tracking_recorder_class
        )
        return cls(self.datastore)

    def process_recorder(self) -> ProcessRecorder:
        cls = self._recorder_class(
            self.PROCESS_RECORDER_TOPIC, self.process_recorder_class
        )
        return cls(self.datastore)

    def _recorder_class(
        self, topic_key: str, default: type[_Recorder]
    ) -> type[_Recorder]:
        topic = self.env.get(topic_key)
        cls = resolve_topic(topic) if topic else default
        if not (isinstance(cls, type) and issubclass(cls, DjangoRecorder)):
            msg = f"{topic_key}={topic!r} is not a recorder class of hero.store"
            raise InfrastructureFactoryError(msg)
        # Only checked to be one of hero's recorders: that a topic names one of
        # the default's kind is the site's setting to get right.
        return cast("type[_Recorder]", cls)


Factory = DjangoFactory
