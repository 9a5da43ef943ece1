"""The packages' import graph keeps its layers: no import cycles, and each layer imports
only the layers below it.

The graph comes from the source's AST, so imports inside functions (the CLI's lazy imports)
and under ``TYPE_CHECKING`` count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "models", "workflows", "activities", "worker", "client", "bench")
# package: the packages it must never import.
FORBIDDEN = {
    "common": ("models", "workflows", "activities", "worker", "client", "bench"),
    "models": ("workflows", "activities", "worker", "client", "bench"),
    "worker": ("client", "bench"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imported(module: str, path: Path, modules: set[str]) -> Iterator[str]:
    """The project modules ``module`` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from pkg import name` imports the module pkg.name when there is one.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            # `import a.b.c` of a module a.b.c, or of a name inside the module a.b.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


def import_graph() -> dict[str, set[str]]:
    """Each project module and the project modules it imports."""
    sources = _sources()
    modules = set(sources)
    return {module: set(_imported(module, path, modules)) for module, path in sources.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _path_within(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module, as the chain of imports."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for successor in sorted(graph[node] & members):
            if successor == start:
                return [*paths[node], start]
            if successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    return component  # unreachable: every component has a cycle through each member


def test_the_graph_sees_lazy_imports():
    """Guards the test itself: imports inside functions are edges too."""
    graph = import_graph()
    assert "common.telemetry" in graph["common.connection"]  # imported inside connect()


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    found = [" -> ".join(_path_within(graph, c)) for c in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(package):
    forbidden = FORBIDDEN[package]
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(import_graph().items())
        if module.split(".")[0] == package
        for target in sorted(targets)
        if target.split(".")[0] in forbidden
    ]
    assert not wrong, "\n".join(wrong)


def test_search_attribute_keys_import_only_what_the_sandbox_allows():
    """Workflows import the keys inside Temporal's sandbox, which passes ``temporalio``."""
    tree = ast.parse((ROOT / "common" / "search_attributes.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"temporalio.common"}, imported
