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
