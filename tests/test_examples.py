"""Every script in examples/ runs, with small settings, as a user would run it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cbackprop as cb

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name, *args, timeout=180):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_every_example_is_tested():
    tested = {"xor.py", "digits.py", "mnist.py", "sklearn_gridsearch.py", "threads.py",
              "vanishing_gradients.py", "many_seeds.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_xor_is_solved():
    out = run_example("xor.py")
    assert out.strip().endswith("solved")
    outputs = [float(line.split()[-1]) for line in out.splitlines()[2:6]]
    targets = [int(line.split()[2]) for line in out.splitlines()[2:6]]
    assert targets == [0, 1, 1, 0]
    assert all(abs(o - t) < 0.1 for o, t in zip(outputs, targets, strict=True))


def test_digits(tmp_path):
    plot, model = tmp_path / "curves.png", tmp_path / "digits.cbp"
    args = ["--epochs", 3, "--save", model]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", plot]
    except ImportError:
        plot = None
    out = run_example("digits.py", *args)
    assert len(re.findall(r"^epoch \d/3", out, re.M)) == 3
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", out).group(1)) / 100
    X, y = cb.datasets.load_digits()
    _, X_test, _, y_test = cb.datasets.train_test_split(X / 16, y, 0.25, seed=0)
    assert accuracy == pytest.approx(cb.load(model).evaluate(X_test, y_test)["accuracy"],
                                     abs=1e-4)
    if plot is not None:
        assert plot.read_bytes()[:4] == b"\x89PNG"


def test_mnist_on_a_small_generated_directory(tmp_path):
    from test_datasets import write_idx

    # 10 classes, each a bright 2-pixel bar at its own place in a 6×6 image.
    rng = np.random.default_rng(0)
    for split, n in (("train", 400), ("t10k", 100)):
        y = rng.integers(0, 10, n)
        images = rng.integers(0, 40, (n, 6, 6)).astype(np.uint8)
        images[np.arange(n), y // 5 * 3, y % 5] = 250
        images[np.arange(n), y // 5 * 3 + 1, y % 5] = 250
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", y, compress=True)
    out = run_example("mnist.py", tmp_path, "--epochs", 8, "--hidden", "32", "--threads", 1)
    assert "400 training and 100 test images of 36 pixels" in out
    assert float(re.search(r"test accuracy ([\d.]+)%", out).group(1)) > 90


def test_mnist_on_an_empty_directory_says_what_is_missing(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(EXAMPLES / "mnist.py"), str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "has no MNIST train images file" in proc.stderr and "nothing is downloaded" in \
        proc.stderr


def test_sklearn_gridsearch():
    pytest.importorskip("sklearn")
    out = run_example("sklearn_gridsearch.py", "--max-iter", 10, "--cv", 2)
    scores = re.findall(r"^  (0\.\d{3})  alpha=\S+, hidden_layer_sizes=", out, re.M)
    assert len(scores) == 6
    best = re.search(r"^best: (.*)$", out, re.M).group(1)
    assert re.search(rf"^  {max(scores)}  {re.escape(best)}$", out, re.M)
    assert float(re.search(r"best model: ([\d.]+)%", out).group(1)) > 50


def test_threads():
    out = run_example("threads.py", "--models", 3, "--epochs", 2, "--workers", 3)
    rows = re.findall(r"^lr (\S+): test accuracy ([\d.]+)% \(threaded run: ([\d.]+)%\)$", out,
                      re.M)
    assert len(rows) == 3
    # A seeded network trains to the same result in a thread as on its own.
    assert all(serial == threaded for _, serial, threaded in rows)
    assert "3 models one after another" in out


def test_vanishing_gradients_shows_sigmoid_shrinking_and_relu_not():
    out = run_example("vanishing_gradients.py", "--depth", "6", "--epochs", "1")
    ratios = dict(re.findall(r"^(sigmoid|relu): .* = (\S+)$", out, re.M))
    assert float(ratios["sigmoid"]) > 100 > 10 > float(ratios["relu"])
    assert "vanishing gradients" in out


def test_many_seeds_reports_each_rate_over_its_seeds():
    out = run_example("many_seeds.py", "--epochs", "8", "--seeds", "2")
    lines = out.strip().splitlines()
    assert lines[0].startswith("6 networks, 8 epochs")
    accuracy = [float(re.search(r"test accuracy ([\d.]+)%", line).group(1)) for line in lines[1:]]
    assert len(accuracy) == 3 and accuracy[-1] > 90 and all("over 2 seeds" in line
                                                            for line in lines[1:])
