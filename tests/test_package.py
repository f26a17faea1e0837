"""The package's face: what `import cbackprop` gives and costs."""

import os
import subprocess
import sys
from pathlib import Path

import cbackprop as cb

ROOT = Path(__file__).resolve().parent.parent


def test_estimators_are_public_names():
    assert {"MLPClassifier", "MLPRegressor"} <= set(cb.__all__)
    for name in cb.__all__:
        assert name in dir(cb)


def test_import_stays_lazy_about_scikit_learn():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import sys, cbackprop; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60, check=True).stdout
    assert out.strip() == "False"


def test_setup_builds_in_parallel_and_only_what_changed():
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert "nthreads=" in text and '"parallel"' in text
    assert "depends=" in text


def test_readme_names_every_extra_and_says_missing_ones_are_skipped():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for extra in extras:
        assert f"`{extra}`" in readme
    assert "skipped" in readme
