"""A log, for the trust tests, of what each process did with the store's positions.

When a test finds a read model missing an event, the log tells how: which
process reserved the event's position (and whether it projected inline), which
read of the store passed that position without returning it (a follower's
subscription, a writer catching a read model up, a rebuild), which read
models applied it, and which process first moved a read model's position
past it. ``hero_verify`` alone says only that the entry is missing.

A test turns it on with :func:`recording` (its children inherit the file's
path through the environment); each process keeps its records in memory and
appends them to the file as JSON lines when it ends. :func:`explain` reads
them back for one position. Only the standard library is imported at module
level: a child imports this module before Django is configured.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The file each process of the test appends its records to.
ENV_LOG = "HERO_TRUST_STORE_LOG"

_records: list[dict[str, Any]] = []
_lock = threading.Lock()
_installed: list[Callable[[], None]] = []


def _note(kind: str, **fields: Any) -> None:
    record = {"kind": kind, "t": time.time(), "pid": os.getpid(), **fields}
    with _lock:
        _records.append(record)


def flush() -> None:
    """Append this process's records to the log file (if any) and forget them."""
    path = os.environ.get(ENV_LOG)
    with _lock:
        records, _records[:] = list(_records), []
    if path and records:
        with open(path, "a") as file:
            file.writelines(json.dumps(r, default=str) + "\n" for r in records)


def flushed() -> Path | None:
    """The log file of the test being recorded, with this process's records
    written to it; None when no test keeps a log."""
    path = os.environ.get(ENV_LOG)
    if not path:
        return None
    flush()
    return Path(path)


def install() -> None:
    """Wrap the store's reads and the positions' writes of this process so that
    they are logged (once; :func:`uninstall` puts them back)."""
    if _installed:
        return
    from hero.conf import conf
    from hero.projections.base import ReadModel
    from hero.store.positions import Positions
    from hero.store.recorders import DjangoAggregateRecorder, DjangoApplicationRecorder

    def wrap(owner: type, name: str, log: Callable[..., None]) -> None:
        original = owner.__dict__[name]

        @functools.wraps(original)
        def logged(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            log(result, *args, **kwargs)
            return result

        setattr(owner, name, logged)
        _installed.append(lambda: setattr(owner, name, original))

    def read(
        rows: Any,
        recorder: Any,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Any = (),
        *,
        inclusive_of_start: bool = True,
    ) -> None:
        after = (start or 0) - (1 if inclusive_of_start and start else 0)
        _note(
            "read",
            after=after,
            stop=stop,
            limit=limit,
            topics=bool(topics),
            ids=[row[0] for row in rows],
        )

    def reserved(positions: Any, recorder: Any, *args: Any, **_: Any) -> None:
        if recorder.serialise_inserts:  # the store's events, not snapshots
            _note("reserved", ids=list(positions), mode=conf.HERO_PROJECTIONS)

    def marked_behind(
        result: Any, positions: Any, names: Any, position: int, *args: Any, **_: Any
    ) -> None:
        _note("behind", names=list(names), position=position)

    def written(
        result: Any, positions: Any, cursor: Any, pairs: Any, *args: Any, **_: Any
    ) -> None:
        _note("positions", pairs=[list(pair) for pair in pairs])

    def stayed(
        result: Any,
        positions: Any,
        cursor: Any,
        names: Any,
        before: int,
        *args: Any,
        **_: Any,
    ) -> None:
        _note("stay_current", before=before, result=result)

    def applied(
        result: Any, model: Any, cursor: Any, changes: Any, *args: Any, **_: Any
    ) -> None:
        _note("applied", model=model.name, ids=[c.position for c in changes])

    def prefetched(result: Any, positions: Any, *args: Any, **_: Any) -> None:
        # What a writer read right after its lock, for stay_current.
        if result is not None:
            _note("prefetched", found=dict(result))

    def states(
        result: Any, positions: Any, cursor: Any, names: Any, *args: Any, **kw: Any
    ) -> None:
        # The positions a writer catches up from (CURRENT as "current" when given).
        _note(
            "states",
            current=kw.get("current"),
            found={name: list(state) for name, state in result.items()},
        )

    wrap(DjangoApplicationRecorder, "select_rows", read)
    wrap(ReadModel, "_write", applied)
    wrap(DjangoAggregateRecorder, "_insert_rows", reserved)
    wrap(Positions, "mark_behind", marked_behind)
    wrap(Positions, "write", written)
    wrap(Positions, "stay_current", stayed)
    wrap(Positions, "_prefetched", prefetched)
    wrap(Positions, "states", states)


def uninstall() -> None:
    while _installed:
        _installed.pop()()


def install_if_asked() -> None:
    """In a child: log when the test asked for it, and write the log at exit."""
    if os.environ.get(ENV_LOG):
        install()
        atexit.register(flush)


@contextmanager
def recording(path: Path) -> Iterator[Path]:
    """Log this process and the children it starts meanwhile to ``path``."""
    previous = os.environ.get(ENV_LOG)
    os.environ[ENV_LOG] = str(path)
    install()
    try:
        yield path
    finally:
        flush()
        uninstall()
        if previous is None:
            os.environ.pop(ENV_LOG, None)
        else:
            os.environ[ENV_LOG] = previous


def passed_by(path: Path, store: set[int]) -> dict[int, list[str]]:
    """The positions in ``store`` (the events there now) that a read of the log
    passed without returning them, each with what the log says of it: a
    follower that read past them would never apply them."""
    records = _load(path)
    missed = {p for r in records for p in _passed(r) if p in store}
    return {position: _explain(records, position) for position in sorted(missed)}


def explain(path: Path, position: int) -> list[str]:
    """What the log says about ``position``: who reserved it, the reads that
    passed it without returning it, the read models that applied it, and the
    first marks and positions past it."""
    return _explain(_load(path), position)


def _load(path: Path) -> list[dict[str, Any]]:
    """The log's records, in the order they were made."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted(records, key=lambda r: r["t"])


def _passed(record: dict[str, Any]) -> set[int]:
    """The positions a read passed without returning them: up to its ``stop``
    if it had one, else up to the last it returned; none for a read of some
    topics only (it skips the others by design), nor for what is not a read."""
    if record["kind"] != "read" or not record["ids"] or record["topics"]:
        return set()
    end = record["stop"] if record["stop"] is not None else record["ids"][-1]
    return set(range(record["after"] + 1, end + 1)) - set(record["ids"])


def _explain(records: list[dict[str, Any]], position: int) -> list[str]:
    reserved = [r for r in records if r["kind"] == "reserved" and position in r["ids"]]
    # CURRENT means "every event so far": past the position only once it exists.
    since = reserved[0]["t"] if reserved else 0.0
    lines = []
    first_past: set[str] = set()
    behind = stays = seen = 0
    for r in records:
        stamp = f"{r['t']:.6f} pid {r['pid']}"
        if r in reserved:
            lines.append(f"{stamp}: reserved {r['ids']} ({r['mode']} projections)")
        elif r["kind"] == "applied" and position in r["ids"]:
            lines.append(f"{stamp}: applied to {r['model']} with {_ranges(r['ids'])}")
        elif position in _passed(r):
            lines.append(
                f"{stamp}: a read after {r['after']} (stop {r['stop']}, "
                f"limit {r['limit']}) returned {_ranges(r['ids'])}, not {position}"
            )
        elif r["t"] < since:
            continue
        elif r["kind"] == "behind" and behind < 3:
            behind += 1
            lines.append(f"{stamp}: marked {r['names']} behind at {r['position']}")
        elif r["kind"] == "positions":
            for key, value in r["pairs"]:
                if key not in first_past and (value == -1 or value >= position):
                    first_past.add(key)
                    lines.append(f"{stamp}: first set {key} past it, to {value}")
        elif r["kind"] == "stay_current" and r["before"] >= position and stays < 3:
            stays += 1
            lines.append(f"{stamp}: stay current after {r['before']}: {r['result']}")
        elif r["kind"] in ("prefetched", "states") and seen < 6:
            seen += 1
            found = r["found"]
            if r["kind"] == "states":
                lines.append(
                    f"{stamp}: positions read (current={r['current']}): {found}"
                )
            else:
                lines.append(f"{stamp}: positions read after its lock: {found}")
    return lines


def _ranges(ids: list[int]) -> str:
    parts: list[str] = []
    start = previous = ids[0]
    for i in ids[1:]:
        if i != previous + 1:
            parts.append(f"{start}-{previous}" if start != previous else str(start))
            start = i
        previous = i
    parts.append(f"{start}-{previous}" if start != previous else str(start))
    return ",".join(parts)
