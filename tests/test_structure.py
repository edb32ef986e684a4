"""The package's shape, checked from its source: no import cycles, no module past 400 lines, no
package folder a tool would take for build output, and every module says why it exists.

Imports are read with ``ast`` (nothing is imported), function-level imports included: a cycle
hidden inside a function still ties two modules together.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flowprep"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, current: str, is_package: bool, level: int) -> str:
    if level == 0:
        return name
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    """flowprep module -> the flowprep modules it imports (at any depth of its code)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", name, is_package, node.level)
                # `from pkg import mod` imports a module when pkg.mod is one; otherwise it is a name in pkg
                found = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in found:
                # the innermost flowprep module named by the import
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("flowprep") and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_module_over_limit():
    long = {name: n for name, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_no_package_folder_named_like_output():
    bad = [str(p) for p in PACKAGE.rglob("*") if p.is_dir() and p.name in {"build", "dist"}]
    assert bad == []


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_module_says_why_it_exists(name):
    path = _modules()[name]
    text = path.read_text()
    if not text.strip():  # an empty __init__ marks a package and says nothing to explain
        return
    doc = ast.get_docstring(ast.parse(text))
    assert doc and len(doc.split()) >= 5, f"{path} has no opening paragraph saying why it exists"


def test_checker_finds_a_cycle():
    """The cycle finder is not vacuous: a two-module loop is reported, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_training_settings_and_model_names_load_without_torch():
    """Configuration is torch-free: a launcher or a config check does not pay torch's import."""
    code = ("import sys; from flowprep.train import TrainConfig; from flowprep.train.registry import FRONTENDS; "
            "TrainConfig(shards='s', out='o'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_graph_sees_function_level_imports():
    """The reader is not blind to the imports that matter most here: the ones inside functions."""
    graph = import_graph()
    # the runner imports the flow registry inside the function that checks the flow settings
    assert "flowprep.flow" in graph["flowprep.builder.runner"]
