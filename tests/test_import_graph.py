"""The import graph of `codeserve.*`: one namespace, dependencies one way, no cycles.

Read from the source (every import statement, lazy and TYPE_CHECKING ones included), so a
violation fails here even where no test happens to import the offending module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Where each part of the namespace lives on disk (pyproject.toml maps the same folders).
FOLDERS = {
    "codeserve": "codeserve",
    "codeserve.server": "server",
    "codeserve.client": "client",
    "codeserve.loadtest": "loadtest",
}
# Lower layers never import higher ones; parts of one layer never import each other.
LAYERS = {
    "codeserve.__main__": 5,
    "codeserve.cli": 4,
    "codeserve.server": 3,
    "codeserve.client": 3,
    "codeserve.loadtest": 3,
    "codeserve.scoring": 2,
    "codeserve.sandbox": 1,
    "codeserve.datasets": 1,
    "codeserve.common": 0,
    "codeserve": 0,
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "codeserve" and parts[:1] in (["server"], ["client"], ["loadtest"]):
                continue
            found.setdefault(name, path)
    return found


def part_of(module: str) -> str:
    """The layer entry a module belongs to: the longest prefix listed in LAYERS."""
    pieces = module.split(".")
    for i in range(len(pieces), 0, -1):
        if ".".join(pieces[:i]) in LAYERS:
            return ".".join(pieces[:i])
    raise AssertionError(f"{module} is in no layer")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import module` imports that module
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    return {t for t in targets if t == "codeserve" or t.startswith("codeserve.")}


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    edges: dict[str, set[str]] = {}
    for name, path in found.items():
        edges[name] = {t for t in imports_of(name, path, known) if t in known and t != name}
    return edges


def test_every_module_is_in_a_layer() -> None:
    for name in graph():
        part_of(name)


def test_imports_go_one_way() -> None:
    wrong = []
    for name, targets in graph().items():
        here = part_of(name)
        for target in sorted(targets):
            there = part_of(target)
            if there == "codeserve" or there == here:
                continue
            if LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{name} imports {target} ({here} may not import {there})")
    assert not wrong, "\n".join(wrong)


def test_no_cycles() -> None:
    edges = graph()
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_a_known_violation_is_caught(tmp_path: Path) -> None:
    """The checker itself: an import from common up to the server is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from codeserve.server.errors import APIError\n")
    targets = imports_of("codeserve.common.bad", bad, {"codeserve.server.errors"})
    assert targets == {"codeserve.server.errors"}
    assert LAYERS[part_of("codeserve.server.errors")] > LAYERS[part_of("codeserve.common.bad")]


@pytest.mark.parametrize("name", ["server", "client", "loadtest"])
def test_no_top_level_packages_installed(name: str, tmp_path: Path) -> None:
    """Outside the repository (so its folders are not on sys.path), only `codeserve` exists."""
    run = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr
    run = subprocess.run(
        [sys.executable, "-c", f"import codeserve.{name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
