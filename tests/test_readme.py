"""The README's Python blocks run as written: all of them, in order, as one script
(later blocks use the names the quick start defines), in a fresh folder."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"),
                    flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 8


def test_every_python_block_in_the_readme_runs(tmp_path):
    for module in ("sklearn", "torch", "onnx", "onnxruntime", "mpi4py", "dask.distributed"):
        pytest.importorskip(module)
    script = tmp_path / "readme.py"
    script.write_text("\n\n".join(f"# ---- README block {i + 1}\n{block}"
                                  for i, block in enumerate(BLOCKS)), encoding="utf-8")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    import os
    env = {**os.environ, **env, "PATH": os.environ.get("PATH", "")}
    # The blocks run as one script: Dask's workers are forked, not spawned, so that
    # they do not import it (and run every block again) as the Dask block's guard
    # expects of a script of its own.
    env["DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"] = "fork"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
