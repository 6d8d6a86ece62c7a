"""The import graph of the ``fedrs`` package: no cycle, and the library never imports its CLI.

Every ``import`` statement of every module under ``fedrs/`` counts, wherever it sits: at the top,
inside a function (a "lazy" import is still a dependency) or under ``if TYPE_CHECKING:``. An
import ``from a.b import c`` depends on the module ``a.b.c`` when that is a module, else on
``a.b`` (a package's ``__init__``). The graph is read from the source with ``ast``: nothing is
imported, so a broken module still shows up here with its edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fedrs

PACKAGE_DIR = Path(fedrs.__file__).parent
CLI = "fedrs.cli"

#: (lower, upper): no module of ``lower`` imports ``upper``. The CLI faces (``*.commands``) sit
#: above every library package and are exempt. Pretraining sits above the backbone factory and
#: evaluation (its model card evaluates zero-shot); evaluation sits above the backbone.
LAYERS = [
    ("fedrs.backbone", "fedrs.evaluate"),
    ("fedrs.backbone", "fedrs.pretrain"),
    ("fedrs.evaluate", "fedrs.pretrain"),
    # the method contract sits below the engines, run folders and the retrieval wing
    ("fedrs.methods", "fedrs.federated"),
    ("fedrs.methods", "fedrs.runs"),
    ("fedrs.methods", "fedrs.retrieval"),
    ("fedrs.methods", "fedrs.experiment"),
    # the client update, aggregation, DP and the round loop sit below the one-YAML-to-one-run-folder
    # layer (the Flower apps in fedrs.federated.flower run whole experiments, so they sit above it)
    *[(f"fedrs.federated.{m}", upper) for m in ("client", "server", "dp", "engine")
      for upper in ("fedrs.experiment", "fedrs.classification", "fedrs.federated.flower")],
    ("fedrs.runs", "fedrs.experiment"),
]


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package_dir`` (packages by name)."""
    out = {}
    for file in sorted(package_dir.rglob("*.py")):
        parts = list(file.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = file
    return out


def imported_names(module: str, file: Path) -> set[str]:
    """Every dotted name an import statement in ``file`` names (``from a import b``: ``a`` and
    ``a.b``), relative imports resolved against ``module``."""
    is_package = file.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (the longest module prefix of each name)."""
    files = module_files(package_dir)
    graph = {}
    for module, file in files.items():
        targets = set()
        for name in imported_names(module, file):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(v: str) -> None:  # Tarjan; the package has ~100 modules, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_a_cycle_through(graph, component) for component in components]


def _a_cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle from the component's first module back to itself (breadth-first)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def is_cli(module: str) -> bool:
    return module == CLI or module.endswith(".commands")


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# --- the checks on fedrs ------------------------------------------------------------------------

GRAPH = import_graph()


def test_the_graph_covers_every_module_and_sees_lazy_imports():
    assert len(GRAPH) == len(list(PACKAGE_DIR.rglob("*.py")))
    # cli.py imports the command modules by name (importlib), not with an import statement
    assert "fedrs.errors" in GRAPH[CLI]


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles (module -> module it imports -> ...):\n" + "\n".join(
        " -> ".join(c) for c in found)


def test_the_library_never_imports_its_command_line():
    wrong = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if m != CLI
                   for t in targets if is_cli(t))
    assert not wrong, ("library modules import a CLI face (commands.py / fedrs.cli); move what "
                       "they need into the library:\n" + "\n".join(wrong))


@pytest.mark.parametrize("lower, upper", LAYERS, ids=[f"{lo}-not->{up}" for lo, up in LAYERS])
def test_lower_layers_do_not_import_upper_ones(lower, upper):
    wrong = sorted(f"{m} -> {t}" for m, targets in GRAPH.items()
                   if _in(m, lower) and not is_cli(m) for t in targets if _in(t, upper))
    assert not wrong, f"{lower} sits below {upper}:\n" + "\n".join(wrong)


# --- the checker itself, on a tiny package (so a broken checker cannot pass silently) ----------

def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_finds_lazy_type_checking_and_relative_import_cycles(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "def f():\n    from pkg.b import g\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import a\n",
        "d.py": "import pkg.sub.c\n",
        "commands.py": "from pkg.a import f\n",
        "e.py": "from pkg import commands\n",
    })
    graph = import_graph(pkg)
    # importing a.b.c runs the package a.b first: an import names the package and the module
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub", "pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg", "pkg.a"} and graph["pkg.d"] == {"pkg.sub.c"}
    assert graph["pkg.e"] == {"pkg", "pkg.commands"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert [m for m, ts in graph.items() for t in ts if is_cli(t)] == ["pkg.e"]


def test_checker_passes_an_acyclic_package(tmp_path):
    pkg = _write_package(tmp_path, {"__init__.py": "from .a import x\n", "a.py": "x = 1\n",
                                    "b.py": "from pkg import a\nfrom pkg.a import x\n"})
    graph = import_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": set(), "pkg.b": {"pkg", "pkg.a"}}
    assert cycles(graph) == []
