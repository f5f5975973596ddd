"""hero: achievements for Django users, kept in an event-sourced ledger."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
