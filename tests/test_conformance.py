"""hero.store passes the test cases that ship inside eventsourcing.

Each of eventsourcing's abstract recorder test cases is subclassed once per
backend. They are Django ``TransactionTestCase``s: the shipped tests commit
for real, read from other threads, and expect notification ids to start at 1
(hence ``reset_sequences``). No shipped test is skipped or weakened; the one
subscription test that eventsourcing marks optional is run as well.
"""

from __future__ import annotations

import gc
import unittest
from typing import Any, ClassVar

from django.conf import settings
from django.test import TransactionTestCase
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    InfrastructureFactoryTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)
from eventsourcing.utils import Environment

from hero.models import StoredEvent, StoredSnapshot
from hero.store.factory import DjangoFactory
from hero.store.recorders import (
    DjangoAggregateRecorder,
    DjangoApplicationRecorder,
    DjangoProcessRecorder,
    DjangoTrackingRecorder,
)
from hero.store.transactions import DjangoDatastore


def _skip_unless_available(backend: str) -> Any:
    reason = settings.SKIPPED_BACKENDS.get(backend, f"{backend} is not in this run")
    return unittest.skipUnless(backend in settings.BACKEND_ALIASES, reason)


class DjangoRecorderCase(TransactionTestCase):
    backend: ClassVar[str]
    reset_sequences = True

    @classmethod
    def alias(cls) -> str:
        return settings.BACKEND_ALIASES[cls.backend]

    def tearDown(self) -> None:
        # The shipped tests write from threads; each thread's Django connection
        # is closed when the thread's wrapper is collected.
        gc.collect()
        super().tearDown()

    def datastore(self) -> DjangoDatastore:
        return DjangoDatastore(self.alias())


class AggregateRecorderConformance(DjangoRecorderCase, AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return DjangoAggregateRecorder(self.datastore())

    def test_snapshots_table(self) -> None:
        # The same contract holds for the recorder of snapshots.
        self.create_recorder = lambda: DjangoAggregateRecorder(  # type: ignore[method-assign]
            self.datastore(), StoredSnapshot
        )
        self.test_insert_and_select()
        self.assertEqual(StoredSnapshot.objects.using(self.alias()).count(), 4)
        self.assertEqual(StoredEvent.objects.using(self.alias()).count(), 0)


class ApplicationRecorderConformance(DjangoRecorderCase, ApplicationRecorderTestCase):
    def create_recorder(self) -> ApplicationRecorder:
        return DjangoApplicationRecorder(self.datastore())

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TrackingRecorderConformance(DjangoRecorderCase, TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return DjangoTrackingRecorder(self.datastore())


class ProcessRecorderConformance(DjangoRecorderCase, ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        return DjangoProcessRecorder(self.datastore())


class NonInterleavingConformance(
    DjangoRecorderCase, NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> ApplicationRecorder:
        return DjangoApplicationRecorder(self.datastore())


class CustomTrackingRecorder(DjangoTrackingRecorder):
    pass


class InfrastructureFactoryConformance(
    DjangoRecorderCase, InfrastructureFactoryTestCase[DjangoFactory]
):
    def setUp(self) -> None:
        self.env = Environment(
            "TestApp",
            {"PERSISTENCE_MODULE": "hero.persistence", "DJANGO_DATABASE": self.alias()},
        )
        super().setUp()

    def expected_factory_class(self) -> type[DjangoFactory]:
        return DjangoFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return DjangoAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return DjangoApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return DjangoTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return CustomTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return DjangoProcessRecorder


# One concrete class per backend and case; the abstract cases above are removed
# from the module so that the test runner collects only these.
_CASES = (
    AggregateRecorderConformance,
    ApplicationRecorderConformance,
    TrackingRecorderConformance,
    ProcessRecorderConformance,
    NonInterleavingConformance,
    InfrastructureFactoryConformance,
)
for _case in _CASES:
    for _backend, _prefix in (
        ("sqlite", "SQLite"),
        ("postgres", "Postgres"),
        ("mysql", "MySQL"),
    ):
        _name = _prefix + _case.__name__
        _attrs = {"backend": _backend, "__module__": __name__}
        if _backend in settings.BACKEND_ALIASES:
            _attrs["databases"] = {settings.BACKEND_ALIASES[_backend]}
        globals()[_name] = _skip_unless_available(_backend)(
            type(_name, (_case,), _attrs)
        )
    del globals()[_case.__name__]
del _case, _CASES, _attrs
