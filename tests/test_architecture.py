"""The architecture the folder tree promises: stages talk through public names, with no cycles.

A module may import another package of ``tuneloop`` only for names that package exports in its
``__init__``'s ``__all__`` (importing them from the defining submodule is fine: that keeps heavy
modules lazy). Packages must not import each other in a cycle, lazily or not.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import tuneloop

ROOT = Path(tuneloop.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every absolute import of tuneloop, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return [(module, names) for module, names in found if module.startswith("tuneloop.")]


def _public_names(package: str) -> set[str]:
    module = importlib.import_module(f"tuneloop.{package}")
    return set(getattr(module, "__all__", ()))


def test_other_packages_are_used_through_their_public_names() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    violations = []
    for module, path in _modules().items():
        for imported, names in _imports(path):
            target = _package(imported)
            if target == _package(module) or target not in packages:
                continue
            if imported == f"tuneloop.{target}":
                continue  # the package itself: only its __init__'s names are reachable
            private = sorted(set(names) - _public_names(target)) or (
                ["(module)"] if not names else []
            )
            if private:
                violations.append(f"{module} imports {', '.join(private)} from {imported}")
    assert violations == []


def test_no_import_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in _modules().items():
        source = _package(module)
        for imported, _names in _imports(path):
            target = _package(imported)
            if source and target != source:
                graph[source].add(target)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return [*trail, start]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    cycles = [cycle for package in sorted(graph) if (cycle := cycle_from(package))]
    assert cycles == []
