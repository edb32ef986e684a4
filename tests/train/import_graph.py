"""flowprep's import graph read from the source with ``ast``: every import counts, at module level or
inside a function, so a cycle hidden behind a function-level import shows too.

    python -m tests.train.import_graph          # cycles and modules over 400 lines, in all of flowprep

An edge goes to the module that is imported: ``from .config import X`` -> ``train.config``; ``from . import
models`` -> ``train.models``; ``from ..dataset import ShardDataset`` -> ``dataset`` (its __init__). Python also
runs a package's __init__ before a submodule of it; that implicit step is not an edge (it would make every
package with a lazy __init__ look like a loop).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "flowprep"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """{"flowprep.train.models": path, "flowprep.train": path/__init__.py, ...}."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def edges(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:  # a submodule by name, else the module the names come from
                    sub = f"{base}.{alias.name}" if base else alias.name
                    targets.append(sub if sub in known else base)
            for target in targets:
                while target and target not in known and "." in target:  # `import a.b.c` of a name inside
                    target = target.rsplit(".", 1)[0]
                if target in known and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def long_modules(limit: int = 400, root: Path = ROOT) -> dict[str, int]:
    return {m: n for m, p in modules(root).items() if (n := len(p.read_text().splitlines())) > limit}


if __name__ == "__main__":
    found = cycles(edges())
    for c in found:
        print("cycle:", " <-> ".join(c))
    for m, n in long_modules().items():
        print(f"long: {m} ({n} lines)")
    print(f"{len(found)} cycles, {len(long_modules())} modules over 400 lines")
    sys.exit(1 if found or long_modules() else 0)
