"""The layering of nol_fast.optim over nol_fast.ops, read from the source with ``ast``.

The optimizer classes call the ops; the ops never import the classes, and no module of
either package imports a module that imports it back, directly or through others, at module
level or inside a function (lazily): such a circle breaks as soon as someone moves an import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nol_fast"
LAYERS = ("nol_fast.optim", "nol_fast.ops")


def _modules(package: Path) -> dict[str, Path]:
    """Every module of ``package`` by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that ``path`` imports anywhere in its code.

    An import names the module that provides it: ``from package import submodule`` is an
    import of the submodule, ``from module import name`` one of the module, and
    ``importlib.import_module("...")`` with a literal name counts as well.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)):
            found.add(node.args[0].value)
    return {name for name in found if name in modules}


def _in(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Imports among the modules of the two layers."""
    modules = _modules(package)
    ours = {name for name in modules if any(_in(name, layer) for layer in LAYERS)}
    return {name: _imports(modules[name], modules) & ours for name in ours}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports in ``graph``, or None (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[name] = "done"
        path.pop()
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_ops_never_import_optim():
    graph = _graph()
    offending = {name: sorted(t for t in targets if _in(t, "nol_fast.optim"))
                 for name, targets in graph.items() if _in(name, "nol_fast.ops")}
    assert not {k: v for k, v in offending.items() if v}


def test_no_import_circle_in_optim_and_ops():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_check_sees_lazy_and_importlib_imports(tmp_path):
    """The oracle itself: a circle closed by a function-level import or by importlib."""
    package = tmp_path / "nol_fast"
    for name, source in {
        "__init__.py": "",
        "optim/__init__.py": "",
        "optim/a.py": "from nol_fast.ops import b\n",
        "ops/__init__.py": "",
        "ops/b.py": "import importlib\n\ndef f():\n    importlib.import_module('nol_fast.ops.c')\n",
        "ops/c.py": "def g():\n    from nol_fast.optim import a\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(source)
    assert _cycle(_graph(package)) == ["nol_fast.ops.b", "nol_fast.ops.c", "nol_fast.optim.a",
                                "nol_fast.ops.b"]


def test_public_names_import_from_their_former_modules():
    from nol_fast.ops.optim_step import op, reference
    from nol_fast.optim import adabound, multi_tensor

    for name in multi_tensor.__all__:
        assert getattr(multi_tensor, name) is getattr(op, name)
    assert adabound.adabound_update_ is reference.adabound_update_
