"""What the benchmarks report about the machine, the versions and the memory
of a process, and how they print a table.

Memory figures come from ``/proc/self/status`` (Linux): ``VmRSS`` is the
process's resident memory now, ``VmHWM`` its peak ("high water mark"), which
writing ``5`` to ``/proc/self/clear_refs`` resets to the current RSS (Linux 4.0
and later).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


# -- memory ----------------------------------------------------------------


def status(field_name: str) -> int | None:
    """A field of /proc/self/status in bytes (Linux), or None."""
    try:
        with open("/proc/self/status") as lines:
            for line in lines:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def peak_rss(reset: bool) -> int:
    """The process's peak RSS since the last reset (``VmHWM``); when it could
    not be reset, ``ru_maxrss``, the peak of the process's whole life."""
    peak = status("VmHWM") if reset else None
    if peak is None:  # ru_maxrss: kilobytes on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak


def current_rss() -> int:
    return status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mb(value: float) -> str:
    return f"{value / MB:.1f} MB"


# -- versions and machine --------------------------------------------------


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def hero_revision() -> str:
    """The commit of the hero being measured, marked when the tree has changes."""
    try:
        described = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return described.stdout.strip()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def usable_cpus() -> int | str:
    """What ``nproc`` prints: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def machine_line() -> str:
    return (
        f"Machine: nproc {usable_cpus()} (cpu_count {os.cpu_count()}), {cpu_model()}, "
        f"load average {load_average()}"
    )


def versions_line() -> str:
    """Python, SQLite, Django, eventsourcing and hero's revision (Django must be
    importable)."""
    import django

    return (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"Django {django.get_version()}, eventsourcing {package_version('eventsourcing')}, "
        f"hero git {hero_revision()}"
    )


# -- tables ----------------------------------------------------------------


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 0
) -> None:
    """Columns padded to their widest cell: the first ``left`` columns aligned
    left, the others right."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    header = line(headers)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(line(row))
