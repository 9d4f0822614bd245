"""The package's floor plan (docs/architecture.md): layers that import downward only, no import loops, evaluation
independent of training and the CLI, no module reaching into another module's private names.

The import graph is read from the source with `ast`, so imports inside functions count as much as module-level ones.
Each rule is also run on a small planted package, so that a broken checker cannot pass silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest


PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "self_evolve_trl"
# What `eval` may never import: it is usable without the training stack and the command line.
EVAL_FORBIDDEN = ("training", "check", "cli", "recipe")
# The layers, bottom first (docs/architecture.md#layers): a module may import its own layer's and lower layers' modules.
LAYERS = (
    ("errors",),
    ("answers", "voting", "seeds", "plugins"),
    ("data",),
    ("rewards", "advantages"),
    ("judge", "csrs", "certainty", "consistency_filter", "ttrl"),
    ("eval",),
    ("training",),
    ("check", "cli", "recipe", "plot", "vllm_serve", "vllm_server"),
)
# The one documented exception: `rewards/judge.py` keeps the judge math's public import path by re-exporting it.
UPWARD_ALLOWED = {("rewards.judge", "judge")}


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root` (a package is its `__init__`)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(imported module, imported attribute or None) for every import of the package's own modules in `path`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == root_name(modules)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root_name(modules):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.append((submodule, None) if submodule in modules else (target, alias.name))
    return found


def root_name(modules: dict[str, Path]) -> str:
    return min(modules, key=len).split(".")[0]


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """The graph module -> modules it imports, and the imports of another module's private names."""
    modules = module_names(root)
    graph, private = {name: set() for name in modules}, []
    for name, path in modules.items():
        for target, attribute in imports_of(name, path, modules):
            if target in modules and target != name:
                graph[name].add(target)
            if attribute and attribute.startswith("_") and not attribute.startswith("__") and target != name:
                private.append(f"{name} imports {attribute} from {target}")
    return graph, private


def import_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, loops, counter = {}, {}, set(), [], [], [0]

    def visit(start):
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter[0]
                    counter[0] += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
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
                        loops.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return loops


def eval_violations(graph: dict[str, set[str]], package: str) -> list[str]:
    forbidden = tuple(f"{package}.{name}" for name in EVAL_FORBIDDEN)
    return [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        if module == f"{package}.eval" or module.startswith(f"{package}.eval.")
        for target in sorted(targets)
        if any(target == f or target.startswith(f"{f}.") for f in forbidden)
    ]


def layer_of(module: str, package: str) -> int | None:
    top = module.removeprefix(f"{package}.").split(".")[0] if module != package else ""
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def layer_violations(graph: dict[str, set[str]], package: str) -> list[str]:
    """Imports of a higher layer's module (the allowed re-export aside), and modules in no layer."""
    found = []
    for module, targets in sorted(graph.items()):
        if module == package:
            continue
        own = layer_of(module, package)
        if own is None:
            found.append(f"{module} is in no layer")
            continue
        for target in sorted(targets):
            level = layer_of(target, package)
            short = (module.removeprefix(f"{package}."), target.removeprefix(f"{package}.").split(".")[0])
            if level is not None and level > own and short not in UPWARD_ALLOWED:
                found.append(f"{module} imports {target}, a higher layer")
    return found


def test_layers_import_downward_only():
    graph, _ = import_graph(PACKAGE_ROOT)
    assert layer_violations(graph, "self_evolve_trl") == []


def test_no_import_loops():
    graph, _ = import_graph(PACKAGE_ROOT)
    assert import_loops(graph) == []


def test_eval_does_not_import_training_or_cli():
    graph, _ = import_graph(PACKAGE_ROOT)
    assert eval_violations(graph, "self_evolve_trl") == []


def test_no_private_names_across_modules():
    _, private = import_graph(PACKAGE_ROOT)
    assert private == []


@pytest.fixture
def planted(tmp_path) -> Path:
    """A package with one of each defect: a loop a <-> b (one side inside a function), eval importing training, and
    a private name imported across modules."""
    root = tmp_path / "pkg"
    files = {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "def f():\n    from . import a\n\nthing = 1\n",
        "training/__init__.py": "from ..b import thing as _secret_source\n_hidden = 2\n",
        "eval/__init__.py": "",
        "eval/runner.py": "from ..training import _hidden\n",
        "data/__init__.py": "def f():\n    from ..judge import provider\n",
        "judge/__init__.py": "",
        "judge/provider.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_find_planted_defects(planted):
    graph, private = import_graph(planted)
    assert import_loops(graph) == [["pkg.a", "pkg.b"]]
    assert eval_violations(graph, "pkg") == ["pkg.eval.runner imports pkg.training"]
    assert private == ["pkg.eval.runner imports _hidden from pkg.training"]
    assert layer_violations(graph, "pkg") == [
        "pkg.a is in no layer", "pkg.b is in no layer", "pkg.data imports pkg.judge.provider, a higher layer",
        "pkg.eval.runner imports pkg.training, a higher layer",
    ]
