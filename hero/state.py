"""The JSON-safe record of the state passed to ``unlock()``.

What the record may not hold (text no database stores, more than
``HERO_MAX_STATE_BYTES``) is judged by :func:`hero.validation.recorded_state`,
which calls :func:`json_safe` here.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import Model


class _DuplicateKey(ValueError):
    """Two keys of one dict become one key in JSON, where keys are text (``1``
    and ``"1"``): recording both would silently drop one of the values."""

    def __init__(self, first: Any, second: Any, key: str) -> None:
        super().__init__(f"two keys are both {key!r} in JSON")
        self.first, self.second, self.key = first, second, key


#: Deepest nesting of lists and dicts that state may hold (recorded as its
#: ``repr()`` past 20 levels); deeper is refused.
MAX_NESTING = 1000


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists, tuples, sets or dicts in ``value`` nest more than
    ``limit`` levels deep (walked without recursion; a container met again on
    the same path, one that contains itself, is not followed twice)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = item
        else:
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        stack.extend((child, depth + 1) for child in children)
    return False


def model_label(instance: Model) -> str:
    """``"app_label.model:pk"``, how events refer to model instances."""
    return f"{instance._meta.label_lower}:{instance.pk}"


def json_safe(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: model instances become ``"app.model:pk"``,
    dates become ISO strings, and other values JSON cannot hold their ``repr``.

    Raises :class:`_DuplicateKey` for a dict whose keys JSON would merge, and
    whatever a value's own ``repr()`` or ``str()`` raises.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _depth > 20:
        if _nested_deeper_than(value, MAX_NESTING):
            # repr() itself may or may not manage it, depending on the Python:
            # refuse it the same way everywhere.
            raise RecursionError(f"nested more than {MAX_NESTING} levels deep")
        return repr(value)
    if isinstance(value, Model):
        return model_label(value)
    if isinstance(value, dict):
        safe: dict[str, Any] = {}
        originals: dict[str, Any] = {}
        for key, item in value.items():
            text = str(key)
            if text in safe:
                raise _DuplicateKey(originals[text], key, text)
            originals[text] = key
            safe[text] = json_safe(item, _depth + 1)
        return safe
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    return repr(value)
