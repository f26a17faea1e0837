"""The command line: python -m cbackprop [train|evaluate|predict|trace|info]."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cbackprop as cb
from cbackprop.__main__ import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def python_m(*argv, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cbackprop", *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=timeout)


def test_main_job_with_no_arguments():
    proc = python_m()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 30 and "loss" in epochs[0]
    accuracy = float(re.fullmatch(r"test accuracy: (\S+)%", lines[-1]).group(1))
    assert accuracy > 90


def test_errors_are_one_line_with_nonzero_status_in_a_real_process(tmp_path):
    proc = python_m("evaluate", str(tmp_path / "missing.cbp"), "digits")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("cbackprop: error:")
    assert "Traceback" not in proc.stderr
    proc = python_m("train", "digits", "--epochs", "many")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--epochs" in proc.stderr and "--help" in proc.stderr


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["trace"],
                                     ["info"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cbackprop")
    if not command:
        for sub in ("train", "evaluate", "predict", "trace", "info"):
            assert sub in out


def test_train_save_evaluate_predict_digits(tmp_path, capsys):
    model, plot = tmp_path / "digits.cbp", tmp_path / "curves.png"
    args = ["train", "digits", "--hidden", "32", "--epochs", "8", "--save", str(model)]
    if _has("matplotlib"):
        args += ["--plot", str(plot)]
    status, out, _ = run(capsys, *args)
    assert status == 0
    assert len([line for line in out.splitlines() if line.startswith("epoch")]) == 8
    final = dict(re.findall(r"(\w+) ([\d.]+)", out.splitlines()[-3 if _has("matplotlib")
                                                               else -2]))
    assert float(final["val_accuracy"]) > 0.8
    if _has("matplotlib"):
        assert plot.read_bytes()[:4] == b"\x89PNG"
    net = cb.load(model)
    assert [lay.units for lay in net.layers] == [32, 10]

    status, out, _ = run(capsys, "evaluate", str(model), "digits")
    assert status == 0
    accuracy = float(re.search(r"accuracy ([\d.]+)%", out).group(1)) / 100
    X, y = cb.datasets.load_digits()
    _, X_test, _, y_test = cb.datasets.train_test_split(X / 16, y, 0.25, seed=0)
    assert accuracy == pytest.approx(net.evaluate(X_test, y_test)["accuracy"], abs=1e-4)
    assert "(449 rows)" in out

    out_csv = tmp_path / "pred.csv"
    status, out, _ = run(capsys, "predict", str(model), "digits", "--out", str(out_csv))
    assert status == 0 and "449 predictions" in out
    table = np.loadtxt(out_csv, delimiter=",", skiprows=1)
    assert out_csv.read_text().splitlines()[0] == "class," + ",".join(f"p{k}" for k in range(10))
    np.testing.assert_allclose(table[:, 1:], net.predict(X_test), atol=1e-6)
    np.testing.assert_array_equal(table[:, 0], net.predict(X_test).argmax(axis=1))


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_train_quiet_prints_only_the_final_line(capsys):
    status, out, _ = run(capsys, "train", "xor", "--epochs", "2", "--quiet",
                         "--validation-split", "0")
    assert status == 0
    assert out.splitlines() == [out.strip()] and out.startswith("final: loss")
    assert "val_" not in out


def test_train_options_reach_the_network(tmp_path, capsys):
    model = tmp_path / "m.cbp"
    status, out, _ = run(capsys, "train", "spirals", "--hidden", "8,4", "--activation", "tanh",
                         "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                         "--dtype", "float64", "--threads", "1", "--seed", "3",
                         "--alpha", "0.001", "--dropout", "0.1", "--batch-size", "50",
                         "--epochs", "2",
                         "--save", str(model), "-q")
    assert status == 0
    net = cb.load(model)
    assert [(lay.units, lay.activation, lay.dropout) for lay in net.layers] == \
           [(8, "tanh", 0.1), (4, "tanh", 0.1), (3, "softmax", 0.0)]
    assert net.dtype == np.float64 and net.seed == 3 and net.alpha == 0.001
    assert net.n_threads == 1


def test_train_regression_picks_mse_and_identity_output(tmp_path, capsys):
    model = tmp_path / "r.cbp"
    status, out, _ = run(capsys, "train", "regression", "--epochs", "3", "--save", str(model),
                         "-q")
    assert status == 0 and "accuracy" not in out
    net = cb.load(model)
    assert net.loss.name == "mse" and net.layers[-1].activation == "identity"
    status, out, _ = run(capsys, "evaluate", str(model), "regression")
    assert status == 0 and out.startswith("loss ") and "accuracy" not in out
    status, out, _ = run(capsys, "predict", str(model), "regression")
    lines = out.splitlines()
    assert lines[0] == "y0" and len(lines) == 1001


def test_train_csv_with_named_label_column_and_predict_without_it(tmp_path, capsys):
    X, y = cb.datasets.make_xor(300, seed=4)
    csv = tmp_path / "xor.csv"
    with open(csv, "w") as f:
        f.write("label,x0,x1\n")
        for label, (a, b) in zip(y, X, strict=True):
            f.write(f"{label},{a},{b}\n")
    model = tmp_path / "xor.cbp"
    status, _, _ = run(capsys, "train", str(csv), "--label-column", "label", "--hidden", "16",
                       "--activation", "tanh", "--lr", "0.02", "--epochs", "40", "-q",
                       "--save", str(model))
    assert status == 0
    status, out, _ = run(capsys, "evaluate", str(model), str(csv), "--label-column", "label")
    assert status == 0 and float(re.search(r"accuracy ([\d.]+)%", out).group(1)) > 90
    # predict takes the same file (its label column dropped) or the features alone.
    features = tmp_path / "features.csv"
    np.savetxt(features, X, delimiter=",")
    status, without, _ = run(capsys, "predict", str(model), str(features))
    assert status == 0 and len(without.splitlines()) == 301
    # With the label column, each row's true label comes last.
    for given in ([], ["--label-column", "label"], ["--label-column", "0"]):
        status, with_labels, _ = run(capsys, "predict", str(model), str(csv), *given)
        assert status == 0
        assert with_labels.splitlines()[0] == without.splitlines()[0] + ",label"
        assert [line.rsplit(",", 1)[0] for line in with_labels.splitlines()[1:]] == \
            without.splitlines()[1:]
        assert [int(line.rsplit(",", 1)[1]) for line in with_labels.splitlines()[1:]] == \
            y.tolist()


def test_train_npz_and_binary_cross_entropy(tmp_path, capsys):
    X, y = cb.datasets.make_xor(200, seed=0)
    np.savez(tmp_path / "d.npz", X=X, y=y.astype(float))
    model = tmp_path / "m.cbp"
    status, _, _ = run(capsys, "train", str(tmp_path / "d.npz"), "--loss",
                       "binary_cross_entropy", "--epochs", "2", "-q", "--save", str(model))
    assert status == 0
    net = cb.load(model)
    assert net.layers[-1].units == 1 and net.layers[-1].activation == "sigmoid"
    out_npy = tmp_path / "p.npy"
    status, _, _ = run(capsys, "predict", str(model), str(tmp_path / "d.npz"), "--out",
                       str(out_npy))
    assert status == 0
    np.testing.assert_allclose(np.load(out_npy), net.predict(X))


def test_train_mnist_directory(tmp_path, capsys):
    from test_datasets import write_mnist

    write_mnist(tmp_path, n_train=100, n_test=12)     # every digit among the labels
    model = tmp_path / "m.cbp"
    status, out, _ = run(capsys, "train", str(tmp_path), "--epochs", "1", "-q", "--save",
                         str(model))
    assert status == 0 and cb.load(model).n_inputs == 16
    status, out, _ = run(capsys, "evaluate", str(model), str(tmp_path))
    assert status == 0 and "(12 rows)" in out
    status, out, _ = run(capsys, "evaluate", str(model), str(tmp_path), "--split", "train")
    assert "(100 rows)" in out


@pytest.mark.parametrize("argv, match", [
    (["train", "nothing-here"], "no data set or file named 'nothing-here'"),
    (["train", "regression", "--loss", "cross_entropy"], "integer class labels"),
    (["trace", "--loss", "cross_entropy"], "softmax output"),
])
def test_bad_input_is_one_line_and_status_1(argv, match, capsys):
    status, out, err = run(capsys, *argv)
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("cbackprop: error:")
    assert match in err


def test_a_validation_split_that_leaves_no_training_rows_says_so(capsys):
    status, out, err = run(capsys, "train", "xor", "--validation-split", "0.9999", "-q")
    assert status == 1 and "leaves none of the 1000 rows for training" in err


def test_large_integer_targets_are_not_guessed_to_be_classes(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(50, 3))
    np.savez(tmp_path / "prices.npz", X=X, y=np.arange(50) * 5000)
    status, _, err = run(capsys, "train", str(tmp_path / "prices.npz"), "-q")
    assert status == 1 and "--loss mse" in err
    status, out, _ = run(capsys, "train", str(tmp_path / "prices.npz"), "-q", "--loss", "mse",
                         "--epochs", "1")
    assert status == 0 and "accuracy" not in out


def test_wrong_model_or_data_for_evaluate(tmp_path, capsys):
    model = tmp_path / "m.cbp"
    cb.Network(3, [cb.Dense(2, "softmax")], seed=0).save(model)
    status, _, err = run(capsys, "evaluate", str(model), "digits")
    assert status == 1 and f"digits has 64 features, but the model in {model} takes 3" in err
    (tmp_path / "junk.cbp").write_bytes(b"not a model")
    status, _, err = run(capsys, "evaluate", str(tmp_path / "junk.cbp"), "digits")
    assert status == 1 and "not a valid cbackprop model file" in err
    (tmp_path / "data.json").write_text("{}")
    status, _, err = run(capsys, "evaluate", str(model), str(tmp_path / "data.json"))
    assert status == 1 and "unknown file type" in err


@pytest.mark.parametrize("argv", [["train", "digits", "--hidden", "4,x"],
                                  ["train", "digits", "--validation-split", "1.5"],
                                  ["train", "digits", "--optimizer", "lbfgs"],
                                  ["trace", "--x", "a,b"],
                                  ["train", "digits", "--lr", "-1"],
                                  ["train", "digits", "--epochs", "-1"],
                                  ["train", "digits", "--epochs", "0"],
                                  ["train", "digits", "--batch-size", "0"],
                                  ["train", "digits", "--dropout", "1"],
                                  ["train", "digits", "--threads", "0"],
                                  ["train", "digits", "--alpha", "nan"],
                                  ["trace", "--eps", "0"],
                                  ["trace", "--eps", "-1"],
                                  ["trace", "--x", "nan,1"],
                                  ["trace", "--y", "0,inf"],
                                  ["train", "digits", "--hidden", "4,,4"],
                                  ["train", "digits", "--optimizer", "sgd", "--momentum",
                                   "1.5"],
                                  ["train", "digits", "--activation", "softmax"],
                                  ["train", "digits", "--activation", "nope"],
                                  ["trace", "--activation", "nope"],
                                  ["trace", "--output-activation", "nope"],
                                  ["trace", "--loss", "nope"],
                                  ["train", "digits", "--optimizer", "adam", "--momentum", "0.9"],
                                  ["train", "digits", "--label-column", "3"],
                                  ["train", "xor", "--delimiter", ";"],
                                  ["predict", "m.cbp", "spirals", "--label-column", "y"],
                                  ["frobnicate"]])
def test_usage_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "error:" in err and "--help" in err
    assert out == ""        # rejected while parsing: no data or model lines first


def test_trace_prints_forward_backward_and_checked_gradients(capsys):
    status, out, _ = run(capsys, "trace")
    assert status == 0
    for heading in ("Forward pass", "Backward pass", "Gradients"):
        assert heading in out
    # Rebuild the same network and compare every printed number with trace().
    net = cb.Network(2, [cb.Dense(2, "sigmoid"), cb.Dense(2, "sigmoid")], loss="mse",
                     dtype="float64", seed=0)
    x, y = np.array([0.05, 0.10]), np.array([0.01, 0.99])
    records = net.trace(x, y)
    forward = re.findall(r"^\s+(\d)\s+(\d)\s+(\S+)\s+(\S+)$", out.split("Backward")[0], re.M)
    assert len(forward) == 4
    for layer, unit, z, a in forward:
        rec = records[int(layer) - 1]
        assert float(z) == pytest.approx(rec.z[int(unit) - 1], abs=1e-6)
        assert float(a) == pytest.approx(rec.a[int(unit) - 1], abs=1e-6)
    backward = re.findall(r"^\s+(\d)\s+(\d)\s+(\S+)$",
                          out.split("Backward")[1].split("Gradients")[0], re.M)
    assert [b[0] for b in backward] == ["2", "2", "1", "1"]      # output layer first
    for layer, unit, d in backward:
        assert float(d) == pytest.approx(records[int(layer) - 1].dC_dz[int(unit) - 1], abs=1e-6)
    weights = re.findall(r"^\s+w(\d)\[(\d)→(\d)\]\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$",
                         out, re.M)
    assert len(weights) == 8
    for layer, i, j, a, delta, grad, fd, err in weights:
        rec = records[int(layer) - 1]
        expected = rec.dC_dW[int(i) - 1, int(j) - 1]
        assert float(grad) == pytest.approx(expected, abs=1e-8)
        assert float(grad) == pytest.approx(float(a) * float(delta), abs=1e-6)
        assert float(fd) == pytest.approx(expected, abs=1e-8)
        assert float(err) < 1e-6
    biases = re.findall(r"^\s+b(\d)\[(\d)\]\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    assert len(biases) == 4
    worst = float(re.search(r"central differences .*: (\S+)$", out, re.M).group(1))
    assert worst < 1e-6


def test_trace_other_shapes(capsys):
    status, out, _ = run(capsys, "trace", "--x", "1,-1,0.5", "--hidden", "3,2",
                         "--activation", "tanh", "--output-activation", "softmax",
                         "--loss", "cross_entropy", "--y", "0,1")
    assert status == 0 and "A 3-3-2-2 network" in out
    assert len(re.findall(r"^\s+w\d\[", out, re.M)) == 9 + 6 + 4
    assert float(re.search(r"central differences .*: (\S+)$", out, re.M).group(1)) < 1e-6


def test_info(capsys):
    status, out, _ = run(capsys, "info")
    assert status == 0
    assert out.startswith(f"cbackprop {cb.__version__}")
    assert "float32, float64" in out
    blas = [line for line in out.splitlines() if line.startswith("BLAS (used by cbackprop)")]
    assert len(blas) == 1 and "threads" in blas[0] and "kernel" in blas[0]
    assert "optional:" in out


def test_console_script_entry_point_is_main():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'cbackprop = "cbackprop.__main__:main"' in text
    assert build_parser().prog == "cbackprop"


def test_plot_without_matplotlib_fails_before_training(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib fails
    status, out, err = run(capsys, "train", "digits", "--plot", str(tmp_path / "c.png"))
    assert status == 1 and out == ""
    assert "cbackprop[plot]" in err and err.count("\n") == 1


@pytest.mark.parametrize("option, name, match", [
    ("--save", "", "is a folder"),
    ("--save", "missing/m.cbp", "there is no folder"),
    ("--plot", "", "is a folder"),
    ("--plot", "missing/c.png", "there is no folder"),
    ("--plot", "curves.txt", "suffix"),
])
def test_output_paths_are_checked_before_training(option, name, match, tmp_path, capsys):
    if option == "--plot":
        pytest.importorskip("matplotlib")
    status, out, err = run(capsys, "train", "digits", option, str(tmp_path / name))
    assert status == 1 and out == ""
    assert match in err and err.count("\n") == 1 and ".tmp" not in err


@pytest.mark.parametrize("name, match", [("", "is a folder"),
                                         ("missing/p.csv", "there is no folder")])
def test_predict_out_is_checked_before_the_model_is_read(name, match, tmp_path, capsys):
    # The model does not exist either: the --out check comes first.
    status, out, err = run(capsys, "predict", str(tmp_path / "none.cbp"), "digits",
                           "--out", str(tmp_path / name))
    assert status == 1 and out == ""
    assert err.startswith("cbackprop: error: --out:") and match in err


def test_a_failed_save_names_the_file_not_its_temporary(monkeypatch, tmp_path, capsys):
    from cbackprop import serialization

    def full_disk(path, *args, **kwargs):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(serialization.os, "open", full_disk)
    model = tmp_path / "m.cbp"
    status, _, err = run(capsys, "train", "xor", "--epochs", "1", "-q", "--save", str(model))
    assert status == 1 and err.count("\n") == 1
    assert f"--save {model}: could not write it: No space left on device" in err
    assert ".tmp" not in err


def test_predict_into_a_closed_pipe_exits_quietly(tmp_path):
    model = tmp_path / "m.cbp"
    cb.Network(2, [cb.Dense(10, "softmax")], seed=0).save(model)
    # About 2 MB of output: far more than a pipe holds, so the writer meets the closed end
    # however late the reader closes it.
    np.savez(tmp_path / "d.npz", X=np.zeros((20_000, 2)))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "cbackprop", "predict", str(model),
                             str(tmp_path / "d.npz")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)
    proc.stdout.readline()
    proc.stdout.close()         # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert err == "" and proc.returncode == 141


@pytest.mark.parametrize("argv", [["info"], ["trace"], ["evaluate", "MODEL", "xor"]])
def test_buffered_output_into_a_closed_pipe_exits_quietly(argv, tmp_path):
    # Into a pipe stdout is block-buffered (unless PYTHONUNBUFFERED is set): the output is
    # written only when flushed, after the command; that must be quiet too.
    model = tmp_path / "m.cbp"
    cb.Network(2, [cb.Dense(2, "softmax")], seed=0).save(model)
    argv = [str(model) if a == "MODEL" else a for a in argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTHONUNBUFFERED", None)
    read_end, write_end = os.pipe()
    os.close(read_end)          # the reader is gone before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "cbackprop", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, env=env, cwd=ROOT, timeout=60)
    finally:
        os.close(write_end)
    assert proc.stderr.decode() == "" and proc.returncode == 141


def _write_pets(path, rng, n=120):
    X = rng.normal(size=(n, 2))
    kinds = np.where(X[:, 0] > 0, "cat", "dog")
    with open(path, "w") as f:
        f.write("w,h,kind\n")
        for (a, b), kind in zip(X, kinds, strict=True):
            f.write(f"{a},{b},{kind}\n")
    return X, kinds


def test_text_labels_train_save_predict_and_evaluate(tmp_path, capsys):
    X, kinds = _write_pets(tmp_path / "pets.csv", np.random.default_rng(0))
    model = tmp_path / "pets.cbp"
    status, out, err = run(capsys, "train", str(tmp_path / "pets.csv"), "--epochs", "30",
                           "--lr", "0.02", "--save", str(model))
    assert status == 0, err
    assert "labels: 2 classes (cat, dog), encoded as outputs 0..1" in out
    assert cb.load(model).classes == ["cat", "dog"]
    status, out, _ = run(capsys, "evaluate", str(model), str(tmp_path / "pets.csv"))
    assert status == 0 and float(re.search(r"accuracy ([\d.]+)%", out).group(1)) > 90
    status, out, _ = run(capsys, "predict", str(model), str(tmp_path / "pets.csv"))
    lines = out.splitlines()
    assert lines[0] == "class,p_cat,p_dog,kind" and len(lines) == 121
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == list(kinds)
    predicted = [line.split(",")[0] for line in lines[1:]]
    assert set(predicted) <= {"cat", "dog"}
    assert np.mean(np.array(predicted) == kinds) > 0.9
    (tmp_path / "other.csv").write_text("w,h,kind\n1,2,bird\n")
    status, _, err = run(capsys, "evaluate", str(model), str(tmp_path / "other.csv"))
    assert status == 1 and "not trained on: bird" in err


def test_labels_one_to_three_are_encoded_and_said(tmp_path, capsys):
    X, y = cb.datasets.make_spirals(300, n_classes=3)
    np.savez(tmp_path / "d.npz", X=X, y=y + 1)
    model = tmp_path / "m.cbp"
    status, out, _ = run(capsys, "train", str(tmp_path / "d.npz"), "--epochs", "2",
                         "--save", str(model))
    assert status == 0 and "labels: 3 classes (1, 2, 3), encoded as outputs 0..2" in out
    net = cb.load(model)
    assert net.layers[-1].units == 3 and net.classes == [1, 2, 3]
    status, out, _ = run(capsys, "predict", str(model), str(tmp_path / "d.npz"))
    lines = out.splitlines()
    assert lines[0] == "class,p1,p2,p3"
    assert {line.split(",")[0] for line in lines[1:]} <= {"1", "2", "3"}
    status, out, _ = run(capsys, "evaluate", str(model), str(tmp_path / "d.npz"))
    assert status == 0 and "(300 rows)" in out
    status, out, _ = run(capsys, "train", "digits", "--epochs", "1", "--save", str(model))
    assert "labels:" not in out and cb.load(model).classes == list(range(10))


def test_label_column_and_delimiter_are_for_tables_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "digits", "--label-column", "3"])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2 and "--label-column is for .csv/.tsv tables" in err
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.arange(4) % 2)
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "d.npz"), "--label-column", "0"])
    assert "d.npz has its labels in its array y" in capsys.readouterr()[1]
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "m.cbp", str(tmp_path / "d.npz"), "--split", "train"])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2 and "d.npz is used whole" in err
    (tmp_path / "mnist").mkdir()
    with pytest.raises(SystemExit):
        main(["evaluate", "m.cbp", str(tmp_path / "mnist"), "--label-column", "3"])
    assert "an MNIST directory has its labels built in" in capsys.readouterr()[1]
    path = tmp_path / "d.csv"
    path.write_text("a;b;c\n1;2;0\n3;4;1\n5;6;0\n7;8;1\n")
    status, _, err = run(capsys, "train", str(path), "--delimiter", ";", "--epochs", "1",
                         "-q", "--validation-split", "0")
    assert status == 0, err


def test_bad_csv_cells_are_reported_by_line_and_column(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,0\n3,,1\n")
    status, _, err = run(capsys, "train", str(path))
    assert status == 1 and "line 3, column 2 ('b'): found an empty cell" in err


def test_mnist_train_files_alone_are_enough_to_train(tmp_path, capsys):
    from test_datasets import write_mnist

    write_mnist(tmp_path, n_train=30, n_test=5)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).unlink()
    status, _, err = run(capsys, "train", str(tmp_path), "--epochs", "1", "-q")
    assert status == 0, err
    status, _, err = run(capsys, "train", str(tmp_path / "train-images-idx3-ubyte.gz"))
    assert status == 1 and "unknown file type" in err


def test_a_loss_that_blows_up_is_warned_about(capsys):
    status, out, err = run(capsys, "train", "digits", "--optimizer", "sgd", "--lr", "1e9",
                           "--epochs", "2", "-q")
    assert status == 0
    assert "warning: the training loss rose" in err and "--lr" in err
    status, out, err = run(capsys, "train", "digits", "--epochs", "2", "-q")
    assert status == 0 and err == ""


def _write_animals(tmp_path, n=200):
    """The issue's files: the label in the middle, then the same rows without it."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 3))
    species = np.array(["bird", "cat", "dog"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    mid, bare = tmp_path / "animals_mid.csv", tmp_path / "animals_nolabel.csv"
    mid.write_text("weight,species,height,legs\n" + "".join(
        f"{a:.3f},{s},{b:.3f},{c:.3f}\n" for (a, b, c), s in zip(X, species, strict=True)))
    bare.write_text("weight,height,legs\n" + "".join(f"{a:.3f},{b:.3f},{c:.3f}\n"
                                                     for a, b, c in X))
    return mid, bare, species


def test_a_saved_model_reads_files_as_its_training_file_was(tmp_path, capsys):
    mid, bare, species = _write_animals(tmp_path)
    model = tmp_path / "mid.cbp"
    assert run(capsys, "train", str(mid), "--label-column", "species", "--epochs", "5", "-q",
               "--save", str(model))[0] == 0
    kept = cb.load(model).data_options
    assert kept["label_column"] == "species" and kept["label"] == "species"
    assert kept["columns"] == ["weight", "height", "legs"] and kept["header"] is True
    status, out, err = run(capsys, "evaluate", str(model), str(mid))
    assert status == 0 and "(200 rows)" in out, err
    # A file without the label column: evaluate says so; predict takes it as features.
    status, _, err = run(capsys, "evaluate", str(model), str(bare))
    assert status == 1 and f"{bare} has no label column" in err and "--label-column" in err
    status, without, _ = run(capsys, "predict", str(model), str(bare))
    status, with_labels, _ = run(capsys, "predict", str(model), str(mid))
    assert with_labels.splitlines()[0] == "class,p_bird,p_cat,p_dog,species"
    assert [line.rsplit(",", 1)[1] for line in with_labels.splitlines()[1:]] == list(species)
    assert [line.rsplit(",", 1)[0] for line in with_labels.splitlines()[1:]] == \
        without.splitlines()[1:]


def test_predict_id_column_by_name_or_the_row_number(tmp_path, capsys):
    mid, bare, _ = _write_animals(tmp_path, n=20)
    named = tmp_path / "named.csv"
    lines = mid.read_text().splitlines()
    named.write_text("\n".join([f"name,{lines[0]}"] + [f"a{i},{line}" for i, line in
                                                        enumerate(lines[1:])]) + "\n")
    model = tmp_path / "m.cbp"
    assert run(capsys, "train", str(mid), "--label-column", "species", "--epochs", "1", "-q",
               "--save", str(model))[0] == 0
    status, out, err = run(capsys, "predict", str(model), str(named), "--id-column", "name")
    assert status == 0, err
    rows = out.splitlines()
    assert rows[0].startswith("name,class,") and rows[1].startswith("a0,")
    assert len(rows) == 21
    status, out, _ = run(capsys, "predict", str(model), str(bare), "--id-column", "row")
    assert out.splitlines()[0].startswith("row,class,") and out.splitlines()[2].startswith("2,")


def test_init_continues_a_saved_model_and_early_stopping_keeps_the_best(tmp_path, capsys):
    mid, _, _ = _write_animals(tmp_path)
    model, more = tmp_path / "m.cbp", tmp_path / "more.cbp"
    assert run(capsys, "train", str(mid), "--label-column", "species", "--epochs", "3", "-q",
               "--save", str(model))[0] == 0
    # The label column comes from the model; the weights start where it stopped.
    status, out, err = run(capsys, "train", str(mid), "--init", str(model), "--epochs", "40",
                           "--lr", "0.05", "--early-stopping", "2", "--save", str(more))
    assert status == 0, err
    assert f"continuing the model in {model}" in out
    history = [float(v) for v in re.findall(r"val_loss ([\d.]+)", out)[:-1]]
    if "early stopping" in out:
        assert len(history) < 40
    final = float(re.search(r"final: .*val_loss ([\d.]+)", out).group(1))
    assert final == pytest.approx(min(history), abs=1e-4)
    status, _, err = run(capsys, "train", str(mid), "--init", str(tmp_path / "none.cbp"))
    assert status == 1 and f"--init {tmp_path / 'none.cbp'}: no such file" in err
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(mid), "--init", str(model), "--hidden", "3"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["train", "xor", "--early-stopping", "3", "--validation-split", "0"])
    assert exit_.value.code == 2


def test_trace_a_saved_model_on_a_row_of_real_data(tmp_path, capsys):
    mid, bare, species = _write_animals(tmp_path, n=30)
    model = tmp_path / "m.cbp"
    assert run(capsys, "train", str(mid), "--label-column", "species", "--epochs", "1", "-q",
               "--hidden", "4", "--save", str(model))[0] == 0
    status, out, err = run(capsys, "trace", str(model), str(mid), "--row", "3")
    assert status == 0, err
    assert f"row 3: label {species[2]}, predicted" in out
    assert "Trace of one example through 2 layers (cost C = " in out and "∂C/∂z" in out
    status, _, err = run(capsys, "trace", str(model), str(mid), "--row", "31")
    assert status == 1 and "--row 31" in err and "30 rows" in err
    status, _, err = run(capsys, "trace", str(model), str(bare))
    assert status == 1 and "no labels" in err


def test_trace_result_prints_as_a_table_and_keeps_its_records():
    net = cb.Network(2, [cb.Dense(12, "tanh"), cb.Dense(2, "softmax")], dtype="float64",
                     seed=0)
    trace = net.trace([0.1, -0.2], 1)
    assert len(trace) == 2 and all(set(r._fields) == {"z", "a", "dC_dz", "dC_dW", "dC_db"}
                                   for r in trace)
    assert trace.cost == pytest.approx(net.evaluate([[0.1, -0.2]], [1])["loss"])
    text = repr(trace)
    assert text.startswith("Trace of one example through 2 layers (cost C = ")
    assert "…" in text and len(text.splitlines()) == 1 + 1 + 9 + 2   # 8 of 12 units shown
    html = trace._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 1 + 9 + 2
