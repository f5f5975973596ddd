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


def _unstorable(value: Any, path: str) -> str | None:
    """Where ``value`` holds text a database cannot store (a NUL character, which
    PostgreSQL refuses, or a lone surrogate, which is not UTF-8), or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path} contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path} contains a lone surrogate (not valid UTF-8)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable(key, f"a key in {path}") or _unstorable(
                item, f"{path}[{key!r}]"
            )
            if problem:
                return problem
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _unstorable(item, f"{path}[{index}]")
            if problem:
                return problem
    return None


def record_state(state: dict[str, Any], limit: int) -> dict[str, Any]:
    """The state to store with an event, refused when larger than ``limit`` bytes
    or when it holds text that cannot be stored."""
    safe = {key: json_safe(value) for key, value in state.items() if key != "user"}
    for key, value in safe.items():
        problem = _unstorable(key, "a state key") or _unstorable(
            value, f"state[{key!r}]"
        )
        if problem:
            raise InvalidState(
                f"The state passed to unlock() cannot be recorded: {problem}. "
                "Clean the value before passing it (e.g. value.replace('\\x00', ''))."
            )
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
