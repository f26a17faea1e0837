"""The house rules, read from the source: no import circles, no module imports
the package `__init__`, and no module uses another's private names."""

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(importlib.util.find_spec("cbackprop").origin).parent
MODULES = {
    ".".join(("cbackprop",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(
        ".__init__"): path
    for path in sorted(PACKAGE.rglob("*.py"))
}
COMPILED = {f"cbackprop._core.{p.stem}" for p in PACKAGE.glob("_core/*.pyx")}
KNOWN = set(MODULES) | COMPILED


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _type_checking_blocks(tree) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (imports for annotations only)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


def _imports(name: str, path: Path):
    """[(imported module, imported name or None, line)] of every cbackprop import,
    lazy ones inside functions too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_blocks(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names
                    if a.name.split(".")[0] == "cbackprop"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            if base.split(".")[0] != "cbackprop":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full, None, node.lineno) if full in KNOWN
                           else (base, alias.name, node.lineno))
    return tree, out


def _problems(name: str, tree, found) -> list[str]:
    """Imports of the package __init__ and uses of other modules' private names."""
    out = []
    for module, imported, line in found:
        if module == "cbackprop" and name != "cbackprop":
            out.append(f"{name}:{line} imports the package __init__ ({imported or 'cbackprop'})")
        if imported is not None and _is_private(imported):
            out.append(f"{name}:{line} imports the private name {module}.{imported}")
    # Classes and functions of this module may use each other's private names.
    own = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            value = node.value
            owner = value.id if isinstance(value, ast.Name) else None
            is_super = isinstance(value, ast.Call) and getattr(value.func, "id", "") == "super"
            if owner not in {"self", "cls"} | own and not is_super:
                out.append(f"{name}:{node.lineno} reads {ast.unparse(node)}, a private name "
                           "of another object or module")
    return out


GRAPH, PROBLEMS = {}, []
for _name, _path in MODULES.items():
    _tree, _found = _imports(_name, _path)
    GRAPH[_name] = {module for module, _, _ in _found if module != _name}
    PROBLEMS += _problems(_name, _tree, _found)


def _cycles() -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [])
    return found


def test_the_walk_sees_the_modules_and_their_imports():
    assert {"cbackprop.network", "cbackprop._session", "cbackprop.estimators"} <= set(MODULES)
    assert "cbackprop._session" in GRAPH["cbackprop.network"]
    assert "cbackprop._core._engine" in GRAPH["cbackprop._session"]


def test_no_import_circles():
    assert _cycles() == []


def test_no_module_imports_the_package_init_or_another_modules_private_names():
    assert PROBLEMS == []


@pytest.mark.parametrize("source,problem", [
    ("from cbackprop.network import _snapshot\n", "imports the private name"),
    ("import cbackprop.network as n\nn._views\n", "reads n._views"),
    ("from cbackprop import Network\n", "imports the package __init__"),
    ("import cbackprop\n", "imports the package __init__"),
])
def test_the_rules_catch_a_planted_violation(tmp_path, source, problem):
    """The checks can fail: a module written to break each rule is reported."""
    path = tmp_path / "planted.py"
    path.write_text(source)
    tree, found = _imports("cbackprop.planted", path)
    assert any(problem in message for message in _problems("cbackprop.planted", tree, found))


def test_a_planted_circle_is_found(monkeypatch):
    monkeypatch.setitem(GRAPH, "cbackprop._session", GRAPH["cbackprop._session"]
                        | {"cbackprop.network"})
    assert _cycles()
