"""The JSON-safe record of the state passed to ``unlock()``."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import Model

from hero.exceptions import InvalidState


def model_label(instance: Model) -> str:
    """``"app_label.model:pk"``, how events refer to model instances."""
    return f"{instance._meta.label_lower}:{instance.pk}"


def json_safe(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: model instances become ``"app.model:pk"``,
    dates become ISO strings, and other values JSON cannot hold their ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _depth > 20:
        return repr(value)
    if isinstance(value, Model):
        return model_label(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    return repr(value)


def record_state(state: dict[str, Any], limit: int) -> dict[str, Any]:
    """The state to store with an event, refused when larger than ``limit`` bytes."""
    safe = {key: json_safe(value) for key, value in state.items() if key != "user"}
    size = len(json.dumps(safe, separators=(",", ":")).encode())
    if size > limit:
        biggest = max(safe, key=lambda k: len(json.dumps(safe[k])))
        raise InvalidState(
            f"The state passed to unlock() takes {size} bytes as JSON, more than "
            f"HERO_MAX_STATE_BYTES ({limit}); the largest value is {biggest!r}. "
            "Pass identifiers (a model instance is recorded as 'app.model:pk') "
            "instead of large values, or raise HERO_MAX_STATE_BYTES."
        )
    return safe
