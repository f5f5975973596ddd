"""Exchanges with the PostgreSQL server, counted from libpq's trace of the protocol.

An exchange is one wait of the client for the server: it sends one or more
messages, then reads what the server answered. psycopg's pipelines
(:func:`hero.store.postgres.pipelined`) send several statements before reading,
so statements are not exchanges. libpq traces each message as it is sent
(``F``, from the frontend) or read (``B``, from the backend); the server answers
only at a ``Sync``, a ``Flush`` or a simple ``Query``, so each run of ``B``
lines is the answer to one wait, and the exchanges are those runs.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The message the server ends each statement it ran with.
COMPLETED = "CommandComplete"


@dataclass(frozen=True)
class Trace:
    """libpq's trace of one call (timestamps suppressed): one message a line,
    ``direction<TAB>length<TAB>message<TAB>contents``."""

    lines: list[str]

    @property
    def directions(self) -> list[str]:
        return [line.split("\t", 1)[0] for line in self.lines]

    @property
    def exchanges(self) -> int:
        """Runs of messages from the server: each the answer to one wait."""
        pairs = itertools.pairwise(["F", *self.directions])
        return sum(1 for before, now in pairs if (before, now) == ("F", "B"))

    @property
    def statements(self) -> int:
        """Statements the server ran: each ends with its ``CommandComplete``,
        whether it came alone, in a pipeline or in a query of several."""
        fields = (line.split("\t") for line in self.lines)
        return sum(1 for f in fields if f[0] == "B" and f[2:3] == [COMPLETED])

    def annotated(self, title: str) -> str:
        """The trace under ``title``, a comment line before each exchange."""
        out, number, before = [f"# {title}"], 0, "B"
        for line, now in zip(self.lines, self.directions, strict=True):
            if (before, now) == ("B", "F"):
                number += 1
                out.append(f"# exchange {number}")
            out.append(line)
            before = now
        return "\n".join(out) + "\n"


def traced(connection: Any, call: Callable[[], object]) -> Trace:
    """Run ``call`` with libpq tracing Django's ``connection`` (psycopg 3)."""
    from psycopg import pq

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as file:
        # libpq writes through a C stream of its own on the file's descriptor;
        # untrace() flushes it before the file is read.
        pgconn.trace(file.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            call()
        finally:
            pgconn.untrace()
        file.seek(0)
        return Trace(_messages(file.read()))


def _messages(text: str) -> list[str]:
    """The trace's messages, one a line: a message whose contents hold line
    breaks (a query of several statements) is joined back into one line."""
    messages: list[str] = []
    for line in text.splitlines():
        if line.startswith(("F\t", "B\t")) or not messages:
            messages.append(line)
        else:
            messages[-1] += "\n" + line
    return [message for message in messages if message]
