"""Routes every model to the database of the backend a test runs on."""

from __future__ import annotations

from typing import Any

#: Alias that the ``backend`` fixture points every query at.
current_alias = "default"


class BackendRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return current_alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return current_alias

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True
