"""The command line's long runs: --checkpoint, --resume, --health, Ctrl-C with --save."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cbackprop as cb
from cbackprop.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_checkpoint_then_resume_ends_where_one_run_does(tmp_path, capsys):
    whole, part, ckpt = tmp_path / "whole.cbp", tmp_path / "part.cbp", tmp_path / "run.ckpt"
    common = ["train", "xor", "--seed", "1", "--threads", "1", "-q"]
    assert run(capsys, *common, "--epochs", "6", "--save", str(whole))[0] == 0
    assert run(capsys, *common, "--epochs", "3", "--checkpoint", str(ckpt))[0] == 0
    status, out, _ = run(capsys, "train", "xor", "--seed", "1", "--epochs", "6", "--resume",
                         str(ckpt), "--save", str(part))
    assert status == 0 and "resuming Checkpoint" in out and "epoch 6/6" in out
    np.testing.assert_array_equal(cb.load(part).theta, cb.load(whole).theta)


def test_health_prints_a_table_each_epoch(capsys):
    status, out, _ = run(capsys, "train", "xor", "--epochs", "2", "--health",
                         "--hidden", "8,8")
    assert status == 0
    assert out.count("health after epoch") == 2 and "|dC/dW|" in out


def test_resume_refuses_options_of_a_new_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "xor", "--resume", str(tmp_path / "r.ckpt"), "--health"])
    assert exit_.value.code == 2 and "--resume" in capsys.readouterr().err


def test_ctrl_c_keeps_the_model_and_the_checkpoint_and_says_how_to_resume(tmp_path):
    save, ckpt = tmp_path / "m.cbp", tmp_path / "run.ckpt"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "cbackprop", "train", "digits", "--epochs",
                             "100000", "--hidden", "256,256", "--save", str(save),
                             "--checkpoint", str(ckpt), "--checkpoint-every", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:   # wait for training
        line = proc.stdout.readline()
        if line.startswith("optimizer:"):
            break
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"saved the model as it stands to {save}" in err
    assert f"--resume {ckpt}" in err
    steps = int(err.split(" steps in all")[0].rsplit("(", 1)[1])
    run = cb.resume(ckpt)
    assert steps > 0 and run.optimizer.t == steps
    np.testing.assert_array_equal(cb.load(save).theta, run.network.theta)


def test_resume_as_printed_restores_the_runs_own_options(tmp_path, capsys):
    """`train DATA --resume P` alone continues the run P was started as: its split, seed,
    network, epochs and --save (issue 25's Ctrl-C case), bitwise as one run."""
    whole, part, ckpt = tmp_path / "whole.cbp", tmp_path / "part.cbp", tmp_path / "v.ckpt"
    new_run = ["train", "xor", "--hidden", "8,8", "--validation-split", "0.1", "--seed", "5",
               "--threads", "1", "-q"]
    assert run(capsys, *new_run, "--epochs", "4", "--save", str(whole))[0] == 0
    assert run(capsys, *new_run, "--epochs", "4", "--save", str(part), "--checkpoint",
               str(ckpt))[0] == 0
    # A checkpoint of another run is kept unless --overwrite says otherwise.
    code, _, err = run(capsys, *new_run, "--epochs", "2", "--checkpoint", str(ckpt))
    assert code == 1 and "--overwrite" in err and f"--resume {ckpt}" in err
    # Cut it back to 2 epochs, as an interrupted run would have left it.
    assert run(capsys, *new_run, "--epochs", "2", "--save", str(part), "--checkpoint",
               str(ckpt), "--overwrite")[0] == 0
    import json

    from cbackprop import serialization
    net, entry, _ = serialization.read(ckpt, cb.Network.from_config, checkpoint=True)
    assert entry["metadata"]["command_line"]["epochs"] == 2
    status, out, err = run(capsys, "train", "xor", "--resume", str(ckpt), "--epochs", "4")
    assert status == 0, err
    assert "100 validation rows" in out and "epoch 4/4" in out and f"saved the model to {part}" \
        in out
    np.testing.assert_array_equal(cb.load(part).theta, cb.load(whole).theta)
    assert json.dumps(cb.resume(ckpt).metadata["command_line"]["epochs"]) == "4"


@pytest.mark.parametrize("given, shown", [
    (["--seed", "4"], "--seed 4 contradicts the run checkpointed in {ckpt}, which has --seed 5"),
    (["--hidden", "3"], "--hidden 3 contradicts the run checkpointed in {ckpt}, which has "
                        "--hidden 8"),
    (["--validation-split", "0.3"], "--validation-split 0.3 contradicts"),
    (["--lr", "0.5"], "--lr 0.5 contradicts the run checkpointed in {ckpt}, which has no --lr"),
    (["--checkpoint", "other.ckpt"], "--checkpoint other.ckpt: a resumed run checkpoints to"),
])
def test_resume_refuses_an_option_that_contradicts_the_checkpoint(given, shown, tmp_path,
                                                                   capsys):
    ckpt = tmp_path / "v.ckpt"
    assert run(capsys, "train", "xor", "--hidden", "8", "--seed", "5", "--epochs", "1", "-q",
               "--checkpoint", str(ckpt))[0] == 0
    with pytest.raises(SystemExit) as exit_:
        main(["train", "xor", "--resume", str(ckpt), *given])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and shown.format(ckpt=ckpt) in err
    assert err.count("\n") == 1
    # The same values again are no contradiction.
    assert run(capsys, "train", "xor", "--resume", str(ckpt), "--seed", "5", "--hidden", "8",
               "--epochs", "2", "-q")[0] == 0


def test_resume_of_a_model_file_says_to_use_init(tmp_path, capsys):
    model = tmp_path / "m.cbp"
    assert run(capsys, "train", "xor", "--epochs", "1", "-q", "--save", str(model))[0] == 0
    status, _, err = run(capsys, "train", "xor", "--resume", str(model))
    assert status == 1 and f"--init {model}" in err and "cbackprop.load" not in err
    status, _, err = run(capsys, "train", "xor", "--resume", str(tmp_path / "nope.ckpt"))
    assert status == 1 and "Errno" not in err and f"--resume {tmp_path / 'nope.ckpt'}" in err


def test_under_mpirun_an_error_is_printed_once(tmp_path, capsys):
    """Every rank meets the same error (and the same usage error): rank 0 alone says it."""
    pytest.importorskip("mpi4py")
    import shutil
    mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep
                          + os.environ.get("PATH", ""))
    if mpirun is None:
        pytest.skip("no mpirun (pip install mpich)")
    ckpt = tmp_path / "v.ckpt"
    assert run(capsys, "train", "xor", "--epochs", "1", "-q", "--seed", "5", "--checkpoint",
               str(ckpt))[0] == 0
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for argv, status, says in (
            (["--resume", str(tmp_path / "nope.ckpt")], 1, "no such file"),
            (["--resume", str(ckpt), "--seed", "4"], 2, "--seed 4 contradicts")):
        done = subprocess.run([mpirun, "-n", "2", sys.executable, "-m", "cbackprop", "train",
                               "xor", *argv], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == status, done.stderr
        assert done.stderr.count(says) == 1, done.stderr


def test_resume_restores_the_data_options_of_a_table(tmp_path, capsys):
    table = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    table.write_text("a;kind;b\n" + "".join(f"{a:.3f};{'cat' if a > 0 else 'dog'};{b:.3f}\n"
                                            for a, b in X))
    ckpt, model = tmp_path / "r.ckpt", tmp_path / "m.cbp"
    assert run(capsys, "train", str(table), "--label-column", "kind", "--delimiter", ";",
               "--epochs", "1", "-q", "--checkpoint", str(ckpt), "--save", str(model))[0] == 0
    status, out, err = run(capsys, "train", str(table), "--resume", str(ckpt), "--epochs", "2")
    assert status == 0, err
    assert "epoch 2/2" in out and "2 features" in out
    assert cb.load(model).data_options["label_column"] == "kind"
    status, out, err = run(capsys, "evaluate", str(model), str(table))
    assert status == 0 and "(80 rows)" in out, err
