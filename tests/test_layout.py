"""hero's layout: no import cycle among its modules, and each import inside a
function says why it is there."""

from __future__ import annotations

import ast
from pathlib import Path

HERO = Path(__file__).resolve().parent.parent / "hero"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(HERO.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text())
        for path in HERO.rglob("*.py")
        if "migrations" not in path.parts
    }


def top_level_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The hero modules ``name`` imports when it is imported (not in functions,
    not for type checking), with the packages that importing them imports."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module]
            targets += [f"{node.module}.{alias.name}" for alias in node.names]
        for target in targets:
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                if candidate in known and candidate != name:
                    found.add(candidate)
    # A module's own packages are imported before it, not by it.
    return {m for m in found if not name.startswith(m + ".")}


def test_no_import_cycle_among_heros_modules() -> None:
    trees = modules()
    known = set(trees)
    graph = {name: top_level_imports(name, tree, known) for name, tree in trees.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_each_import_inside_a_function_says_why() -> None:
    unexplained = []
    for path in sorted(HERO.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if not isinstance(inner, (ast.Import, ast.ImportFrom)):
                    continue
                # A comment on one of the lines just above the import (or its group).
                above = lines[max(0, inner.lineno - 6) : inner.lineno - 1]
                if not any(line.strip().startswith("#") for line in above):
                    unexplained.append(
                        f"{path.relative_to(HERO.parent)}:{inner.lineno}"
                    )
    assert unexplained == []


def test_every_public_exception_is_a_hero_error() -> None:
    # Internal control flow may use private exceptions; callers only see hero's.
    import importlib

    from hero.exceptions import HeroError

    public = []
    for name in modules():
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attribute.startswith("_")
                and not issubclass(value, HeroError)
            ):
                public.append(f"{name}.{attribute}")
    assert public == []
