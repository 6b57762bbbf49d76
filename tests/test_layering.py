"""The house rules: imports run one way between packages, no module import circle, small files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "plugins",
    "planners",
    "instruments",
    "protocols",
    "analyzers",
    "simulators",
    "controller",
)
#: package -> the project packages it may import
ALLOWED = {
    "plugins": set(),
    "planners": {"plugins"},
    "instruments": {"plugins"},
    "protocols": {"plugins", "planners"},
    "analyzers": {"plugins", "planners", "instruments", "protocols"},
    "simulators": {"plugins", "planners", "instruments", "protocols"},
    "controller": set(PACKAGES),
}
#: Sub-packages with wider rights, and why: the RL agent is trained on the simulator and reads
#: the time-course protocol's action space, so it sits above both (nothing below imports it).
#: The learned segmenter's training script renders simulator fields to train on; only the
#: command imports it, never the segmenter itself.
EXCEPTIONS = {
    "planners.rl": {"plugins", "planners", "protocols", "simulators", "instruments"},
    "analyzers.learned.train": {"plugins", "planners", "instruments", "protocols", "simulators"},
}
MAX_LINES = 520


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = (
                    module.split(".")[: -node.level]
                    if path.name != "__init__.py"
                    else module.split(".")[: len(module.split(".")) - node.level + 1]
                )
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_lower_layers(package: str) -> None:
    mods = _modules()
    bad = []
    for name, path in mods.items():
        if name.split(".")[0] != package:
            continue
        allowed = next(
            (a for sub, a in EXCEPTIONS.items() if name == sub or name.startswith(sub + ".")),
            ALLOWED[package],
        )
        for imp in _imports(path, name, top_level_only=False):
            target = imp.split(".")[0]
            if target in PACKAGES and target != package and target not in allowed:
                bad.append(f"{name} imports {imp}")
            if imp.startswith("planners.rl") and not name.startswith(("planners.rl", "controller")):
                bad.append(
                    f"{name} imports {imp} (nothing below the controller may use the RL agent)"
                )
    assert not bad, "\n".join(bad)


def test_no_module_import_circle() -> None:
    """Module-level imports form no cycle (a cycle makes import order matter)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for imp in _imports(path, name, top_level_only=True):
            # the deepest known module an import names ("a.b.c" may be module a.b's attribute c)
            while imp and imp not in mods:
                imp = imp.rpartition(".")[0]
            if imp and imp != name and not name.startswith(imp + "."):
                deps.add(imp)
        graph[name] = deps
    cycles = _cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_files_stay_small() -> None:
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _modules().values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not big, "split these files:\n" + "\n".join(big)


def test_registries_do_not_import_their_implementations() -> None:
    for path in (
        "planners/registry.py",
        "protocols/registry.py",
        "analyzers/registry.py",
        "controller/rig/registry.py",
    ):
        imports = _imports(ROOT / path, path[:-3].replace("/", "."), top_level_only=False)
        assert not any(
            i.startswith(
                (
                    "planners.bayesian",
                    "planners.baselines",
                    "protocols.dose_response",
                    "analyzers.plate",
                    "controller.rig.cavro",
                    "controller.rig.mmcore",
                    "controller.rig.pylabrobot",
                    "controller.rig.simulated",
                )
            )
            for i in imports
        ), path
