"""The .pyi stubs of the extension modules match what the modules export."""

import ast
import enum
import importlib
import inspect
import re
import types
from pathlib import Path

import pytest

CORE = Path(importlib.import_module("cbackprop._core").__file__).parent
MODULES = ["_blas", "_sparse", "_activations", "_losses", "_optim", "_engine"]


def _stub_names(path: Path) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return {k: v for k, v in names.items() if not k.startswith("_")}


def _pxd_enum(module: str, enum_name: str) -> dict[str, int]:
    """{member: value} of `cpdef enum enum_name:` in the module's .pxd."""
    text = (CORE / f"{module}.pxd").read_text(encoding="utf-8")
    block = re.search(rf"cpdef enum {enum_name}:\n((?:    .*\n)+)", text).group(1)
    return {m: int(v) for m, v in re.findall(r"^    (\w+) = (\d+)", block, re.M)}


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
            runtime_class = getattr(module, fname)
            if issubclass(runtime_class, enum.Enum):   # the members are the .pxd's
                assert {m.name: int(m) for m in runtime_class} == _pxd_enum(name, fname)
            continue
        if not isinstance(node, ast.FunctionDef):
            continue
        runtime = list(inspect.signature(getattr(module, fname)).parameters)
        assert [a.arg for a in node.args.args] == runtime, fname


def test_py_typed_and_stubs_are_package_data():
    text = (CORE.parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert '"py.typed"' in text and '"*.pyi"' in text
    assert (CORE.parent / "py.typed").exists()
