"""The package's layers, read from its source: every import (function-level ones too) goes to the same layer or a
lower one, the files import each other without a cycle, and no module imports another module's private names."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# bottom to top; a module's layer is the first entry its dotted name starts with
LAYERS = [
    ("statewise", "statewise.errors", "statewise.quiet", "statewise.config", "statewise.metrics", "statewise.memory"),
    ("statewise.envs",),
    ("statewise.method",),
    ("statewise.run",),
    ("statewise.analysis",),
    ("statewise.api",),
    ("statewise.grid",),
    ("statewise.cli",),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "statewise").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    best = (-1, 0)
    for i, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                best = max(best, (len(name), i))
    return best[1]


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported statewise module, names taken from it, line) for every import in the file."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "statewise"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up node.level - 1 packages from this one
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "statewise":
                continue
            for alias in node.names:  # `from statewise.run import runio` imports a module
                sub = f"{base}.{alias.name}"
                out.append((sub, [], node.lineno) if sub in MODULES else (base, [alias.name], node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {target for target, _, _ in _imports(m, p) if target in MODULES and target != m}
            for m, p in MODULES.items()}


def test_imports_go_only_downward():
    upward = [f"{m}:{line} imports {target}"
              for m, p in MODULES.items() for target, _, line in _imports(m, p)
              if target in MODULES and _layer(target) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_files():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node}->{nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_no_module_imports_private_names_of_another():
    private = [f"{m}:{line} takes {name} from {target}"
               for m, p in MODULES.items() for target, names, line in _imports(m, p) for name in names
               if name.startswith("_") and not name.startswith("__") and target != m]
    assert not private, "\n".join(private)


def test_the_checker_sees_every_layer():
    """Guards the test above against a layout change it would silently miss."""
    layers = {_layer(m) for m in MODULES}
    assert layers == set(range(len(LAYERS)))
    assert _layer("statewise.run.trainer") == 3 and _layer("statewise.config") == 0
