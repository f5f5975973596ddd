"""The documentation builds cleanly, and its Python samples run.

``mkdocs build --strict`` fails on a broken link or anchor and on a page in
``docs/`` that ``mkdocs.yml``'s nav leaves out (see its ``validation``
settings), so one build test also keeps every page reachable.

The samples are the fenced blocks whose info string is exactly ``python`` in
``docs/*.md`` and ``README.md``; a block preceded by the line
``<!-- not-tested -->`` only illustrates and is skipped. The samples of a page
run in order, in one namespace, in a database test on each backend.
"""

from __future__ import annotations

import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Backend

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
NOT_TESTED = "<!-- not-tested -->"


@dataclass(frozen=True)
class Sample:
    """One executable code block: its source and the line it starts on."""

    path: Path
    line: int  # 1-based line number of the block's first line of code
    source: str


def _opening_fence(line: str) -> tuple[str, str] | None:
    """The fence and info string of a line that opens a code block, else None."""
    for char in "`~":
        stripped = line.lstrip(char)
        width = len(line) - len(stripped)
        if width >= 3:
            info = stripped.strip()
            # CommonMark: a backtick fence's info string has no backtick.
            if char == "`" and "`" in info:
                return None
            return char * width, info
    return None


def _closes(line: str, fence: str) -> bool:
    """Whether a line closes a block opened with ``fence``."""
    stripped = line.rstrip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def extract_samples(path: Path, text: str | None = None) -> list[Sample]:
    """The executable Python samples of a Markdown file, in order.

    Only fences at the start of a line count, as in Python-Markdown, which
    MkDocs renders with. Raises ValueError for a block that is never closed and
    for a not-tested marker that does not sit right before a fence, so that a
    sample is never skipped or run by mistake.
    """
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    samples: list[Sample] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip() == NOT_TESTED:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if _opening_fence(following) is None:
                raise ValueError(
                    f"{path}:{index + 1}: {NOT_TESTED} must be on the line just "
                    "before a code block's opening fence"
                )
        opening = _opening_fence(line)
        if opening is None:
            index += 1
            continue
        fence, info = opening
        start = index + 1
        end = start
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{index + 1}: code block is never closed")
        marked = index > 0 and lines[index - 1].strip() == NOT_TESTED
        if info == "python" and not marked:
            samples.append(Sample(path, start + 1, "\n".join(lines[start:end]) + "\n"))
        index = end + 1
    return samples


def run_samples(samples: list[Sample], module_name: str) -> types.ModuleType:
    """Execute samples in order in the namespace of one fresh module.

    The module is registered in ``sys.modules`` while the samples run, so that
    classes they define can be found again by their module's name (as
    eventsourcing does with topics).
    """
    module = types.ModuleType(module_name)
    sys.modules[module_name] = module
    try:
        for sample in samples:
            # Padding with blank lines makes line numbers in a traceback those
            # of the Markdown file, so pytest shows the failing line from it.
            padded = "\n" * (sample.line - 1) + sample.source
            exec(compile(padded, str(sample.path), "exec"), module.__dict__)
    finally:
        del sys.modules[module_name]
    return module


def test_docs_build_strict(tmp_path: Path) -> None:
    """The site builds with no warning: no broken link, no page left out of nav."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    result = subprocess.run(
        [*command, "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{output}"


def _page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix() if path.is_relative_to(DOCS) else path.name


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_doc_samples_run(page: Path, backend: Backend) -> None:
    """Every Python sample of a page runs, in order, without raising."""
    samples = extract_samples(page)
    slug = "".join(char if char.isalnum() else "_" for char in _page_id(page))
    run_samples(samples, f"_hero_doc_sample_{slug}")


def test_extract_samples_follows_the_marker_convention() -> None:
    """Only unmarked ``python`` blocks are samples; other fences are skipped whole."""
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            NOT_TESTED,
            "```python",
            "raise AssertionError",
            "```",
            '```python title="settings.py"',
            "raise AssertionError",
            "```",
            "````markdown",
            "```python",
            "raise AssertionError",
            "```",
            "````",
            "~~~python",
            "b = a + 1",
            "~~~",
        ]
    )
    samples = extract_samples(Path("page.md"), text)
    assert [(sample.line, sample.source) for sample in samples] == [
        (2, "a = 1\n"),
        (17, "b = a + 1\n"),
    ]
    assert run_samples(samples, "_hero_doc_sample_test").b == 2


@pytest.mark.parametrize(
    "text",
    [f"{NOT_TESTED}\n\n```python\nx = 1\n```", "```python\nx = 1\n"],
    ids=["marker-not-before-fence", "unclosed-block"],
)
def test_extract_samples_rejects_mistakes(text: str) -> None:
    """A misplaced marker or an unclosed block is an error, not a silent skip."""
    with pytest.raises(ValueError):
        extract_samples(Path("page.md"), text)
