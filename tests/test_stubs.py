"""The .pyi stubs of the extension modules match what the modules export."""

import ast
import importlib
import inspect
import types
from pathlib import Path

import pytest

CORE = Path(importlib.import_module("cbackprop._core").__file__).parent
MODULES = ["_blas", "_activations", "_losses", "_optim", "_engine"]


def _stub_names(path: Path) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return {k: v for k, v in names.items() if not k.startswith("_")}


@pytest.mark.parametrize("name", MODULES)
def test_stub_lists_every_public_name(name):
    module = importlib.import_module(f"cbackprop._core.{name}")
    public = {k for k, v in vars(module).items()
              if not k.startswith("_") and not isinstance(v, types.ModuleType)}
    stub = _stub_names(CORE / f"{name}.pyi")
    assert set(stub) == public


@pytest.mark.parametrize("name", MODULES)
def test_stub_signatures_match(name):
    module = importlib.import_module(f"cbackprop._core.{name}")
    for fname, node in _stub_names(CORE / f"{name}.pyi").items():
        if isinstance(node, ast.ClassDef):
            members = {n.targets[0].id: n.value.value for n in node.body
                       if isinstance(n, ast.Assign)}
            runtime_class = getattr(module, fname)
            if members:      # an enum: the same names and codes
                assert {m.name: int(m) for m in runtime_class} == members, fname
            continue
        if not isinstance(node, ast.FunctionDef):
            continue
        runtime = list(inspect.signature(getattr(module, fname)).parameters)
        assert [a.arg for a in node.args.args] == runtime, fname


def test_py_typed_and_stubs_are_package_data():
    text = (CORE.parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert '"py.typed"' in text and '"*.pyi"' in text
    assert (CORE.parent / "py.typed").exists()
