"""Data-parallel training over MPI (`fit(..., comm=)`), run with mpirun -n 2 and 3."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cbackprop as cb

pytest.importorskip("mpi4py", reason="the [mpi] extra (mpi4py, mpich) is not installed")
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep
                      + os.environ.get("PATH", ""))
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install mpich)")
SCRIPT = Path(__file__).parent / "mpi" / "fit_ranks.py"


def mpirun(ranks, case, tmp_path, timeout=120, settings=(), **spec):
    spec = {"n": 100, "b": 7, "seed": 5, "optimizer": "sgd", "epochs": 3, **spec}
    out = tmp_path / f"{case}-{ranks}-{len(list(tmp_path.iterdir()))}.json"
    env = dict(os.environ, CB_MPI_SPEC=json.dumps(spec), OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(Path(cb.__file__).parent.parent), **dict(settings))
    start = time.monotonic()
    done = subprocess.run([MPIRUN, "-n", str(ranks), sys.executable, str(SCRIPT), case,
                           str(out)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    result = json.loads(out.read_text()) if out.exists() else None
    return done, result, time.monotonic() - start


def one_process(ranks, n, b, seed, optimizer, epochs, health=False):
    """The same training in one process: batches of ranks·b rows, same order."""
    rng = np.random.default_rng(0)
    X, y, w = rng.standard_normal((n, 6)), rng.integers(0, 3, n), rng.uniform(0.2, 2.0, n)
    Xv, yv = rng.standard_normal((30, 6)), rng.integers(0, 3, 30)
    net = cb.Network(6, [cb.Dense(10, "tanh"), cb.Dense(3, "softmax")], dtype="float64",
                     seed=seed, alpha=0.01, n_threads=1)
    opt = {"sgd": cb.SGD(lr=0.1, momentum=0.9), "adam": cb.Adam(lr=0.01)}[optimizer]
    history = net.fit(X, y, optimizer=opt, epochs=epochs, batch_size=ranks * b,
                      sample_weight=w, shuffle=False, validation_data=(Xv, yv), health=health)
    return net, opt, history


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ranks_train_as_one_process_on_the_combined_batches(ranks, optimizer, tmp_path):
    """R ranks with shards and per-rank batch b give one process's θ with batch R·b
    (uneven shards and a short last batch, sample weights, L2), to 1e-10; θ is
    bitwise equal on every rank, and the History is the global one."""
    done, result, _ = mpirun(ranks, "plain", tmp_path, optimizer=optimizer, n=100)
    assert done.returncode == 0, done.stderr
    net, opt, history = one_process(ranks, 100, 7, 5, optimizer, 3)
    assert len(set(result["digests"])) == 1
    assert result["t"] == opt.t
    np.testing.assert_allclose(result["theta"], net.theta, rtol=1e-10, atol=1e-12)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(result["history"][key], history[key], rtol=1e-10)


@pytest.mark.parametrize("ranks", [2, 3])
def test_the_allreduce_overlapped_with_the_backward_pass_changes_no_result(ranks, tmp_path):
    """Overlap on (buckets of one layer each, and of the whole gradient) and off
    (one Allreduce after the backward pass) train alike: bitwise on 2 ranks
    (a sum of two terms has one rounding), to 1e-12 on 3 (MPI may associate
    three ranks' terms differently for another message size); θ is bitwise
    equal on every rank in each."""
    runs = {}
    for label, settings in (("off", {"CBACKPROP_OVERLAP": "0"}),
                            ("layers", {"CBACKPROP_BUCKET_BYTES": "1"}),
                            ("whole", {"CBACKPROP_BUCKET_BYTES": str(1 << 30)})):
        done, runs[label], _ = mpirun(ranks, "plain", tmp_path, optimizer="adam",
                                      settings=settings)
        assert done.returncode == 0, done.stderr
        assert len(set(runs[label]["digests"])) == 1
    for label in ("layers", "whole"):
        if ranks == 2:
            assert runs[label]["digests"] == runs["off"]["digests"], label
        np.testing.assert_allclose(runs[label]["theta"], runs["off"]["theta"], rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(runs[label]["history"]["loss"],
                                   runs["off"]["history"]["loss"], rtol=1e-12)


@pytest.mark.parametrize("overlap", ["1", "0"])
def test_a_non_finite_loss_on_one_rank_is_a_divergence_on_every_rank(overlap, tmp_path):
    """The last rank's batch loss is NaN (finite weights whose sum overflows): with
    the reduction overlapped or not, every rank raises DivergenceError at the same
    step and keeps the θ it had before the fit (rank 0's, broadcast), never hangs."""
    done, result, seconds = mpirun(2, "diverge", tmp_path,
                                   settings={"CBACKPROP_OVERLAP": overlap})
    assert done.returncode == 0, done.stderr
    assert result["epochs"] == [-2, -2]
    assert len(set(result["digests"])) == 1 and seconds < 60
    net = cb.Network(6, [cb.Dense(10, "tanh"), cb.Dense(3, "softmax")], dtype="float64",
                     seed=5, alpha=0.01)
    np.testing.assert_array_equal(result["theta"], net.theta)


def test_a_bad_overlap_setting_is_an_error_on_every_rank(tmp_path):
    done, result, seconds = mpirun(2, "plain", tmp_path,
                                   settings={"CBACKPROP_BUCKET_BYTES": "lots"})
    assert done.returncode != 0 and result is None
    assert "rank 0: ValueError: CBACKPROP_BUCKET_BYTES='lots' is not a valid setting" \
        in done.stdout
    assert seconds < 60


@pytest.mark.parametrize("ranks", [2, 3])
def test_health_under_comm_is_the_combined_batches_health(ranks, tmp_path):
    """fit(comm=, health=True): every rank measures its steps and the epoch's
    sums are totals over the ranks, so rank 0's History holds the health of
    one process training on the combined batches."""
    done, result, _ = mpirun(ranks, "health", tmp_path, optimizer="adam", epochs=2)
    assert done.returncode == 0, done.stderr
    _, _, history = one_process(ranks, 100, 7, 5, "adam", 2, health=True)
    assert len(result["history"]["health"]) == len(history["health"]) == 4
    for got, expected in zip(result["history"]["health"], history["health"]):
        for key, value in expected.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-8, abs=1e-12), key
            else:
                assert got[key] == value, key


@pytest.mark.parametrize("ranks", [2, 3])
def test_a_checkpointed_run_resumes_on_every_rank_bitwise(ranks, tmp_path):
    """fit(comm=, checkpoint=): rank 0 writes one file with every rank's part of
    the run (rows, row order, place in the epoch, random stream); a run stopped
    inside an epoch, resumed by every rank from it, ends bitwise where the
    uninterrupted run ends (shuffled, dropout-free, float64)."""
    spec = dict(shuffle=True, epochs=4, optimizer="adam")
    done, whole, _ = mpirun(ranks, "plain", tmp_path, **spec)
    assert done.returncode == 0, done.stderr
    path = str(tmp_path / "run.ckpt")
    done, stopped, _ = mpirun(ranks, "checkpoint-stop", tmp_path, checkpoint=path, **spec)
    assert done.returncode == 0, done.stderr
    assert stopped["epochs"] == [2] * ranks            # epochs 0 and 1, then one step
    run = cb.resume(path)
    assert run.epoch == 2 and "rows into epoch 3" in repr(run)
    done, resumed, _ = mpirun(ranks, "checkpoint-resume", tmp_path, checkpoint=path, **spec)
    assert done.returncode == 0, done.stderr
    assert resumed["digests"] == whole["digests"]      # every rank's θ, bitwise
    assert resumed["t"] == whole["t"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(resumed["history"][key], whole["history"][key],
                                   rtol=1e-12, err_msg=key)
    done, _, _ = mpirun(ranks + 1, "checkpoint-resume", tmp_path, checkpoint=path, **spec)
    assert done.returncode != 0
    assert f"resume it on as many (mpirun -n {ranks}), not on {ranks + 1}" in done.stdout


def test_bad_input_on_one_rank_is_an_error_on_every_rank(tmp_path):
    done, result, seconds = mpirun(2, "bad-input", tmp_path)
    assert done.returncode != 0 and result is None
    assert "rank 0: ValueError: rank 1 could not start the fit" in done.stdout
    assert "rank 1: ValueError: X contains NaN" in done.stdout
    assert seconds < 60


def test_shards_with_different_batch_counts_are_refused_on_every_rank(tmp_path):
    """14 and 15 rows at batch 7: 2 and 3 batches an epoch. Every rank raises the
    documented ValueError before any collective step, not an MPI error or a hang."""
    done, result, seconds = mpirun(2, "uneven", tmp_path, timeout=60, b=7)
    assert done.returncode != 0 and result is None
    message = ("ValueError: every rank must train the same number of batches per epoch, "
               "but the ranks' rows and batch_size give [2, 3]")
    for rank in (0, 1):
        assert f"rank {rank}: {message}" in done.stdout, done.stdout + done.stderr
    assert seconds < 60


def test_stop_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    done, result, _ = mpirun(2, "stop", tmp_path, epochs=50)
    assert done.returncode == 0, done.stderr
    assert result["epochs"] == [3, 3]           # epochs 0, 1 and one step of epoch 2
    assert len(set(result["digests"])) == 1


def test_ctrl_c_on_one_rank_ends_the_job_cleanly(tmp_path):
    done, result, seconds = mpirun(2, "interrupt", tmp_path, epochs=10**7, n=400)
    assert done.returncode == 0, done.stderr
    assert result["epochs"][0] == -1 or result["epochs"][1] == -1   # the interrupted rank
    assert len(set(result["digests"])) == 1 and seconds < 60


@pytest.mark.parametrize("case,message", [
    ("raise", "rank 1 of 2: RuntimeError: a callback failed on the last rank"),
    ("kill", ""),
])
def test_a_failing_or_killed_rank_ends_the_whole_job(case, message, tmp_path):
    done, result, seconds = mpirun(2, case, tmp_path, epochs=10**6, timeout=90)
    assert done.returncode != 0 and result is None
    assert message in done.stderr
    assert seconds < 60


def test_without_mpi_a_fit_is_unchanged():
    """comm=None is the one-process fit (the module imports mpi4py only when used)."""
    X = np.random.default_rng(0).standard_normal((20, 3))
    y = X[:, :2]
    nets = [cb.Network(3, [cb.Dense(2)], seed=0, dtype="float64") for _ in range(2)]
    nets[0].fit(X, y, optimizer=cb.SGD(), epochs=2)
    nets[1].fit(X, y, optimizer=cb.SGD(), epochs=2, comm=None)
    np.testing.assert_array_equal(nets[0].theta, nets[1].theta)


def test_mpirun_cbackprop_train_trains_data_parallel_and_saves_once(tmp_path):
    save = tmp_path / "m.cbp"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(Path(cb.__file__).parent.parent))
    done = subprocess.run([MPIRUN, "-n", "2", sys.executable, "-m", "cbackprop", "train", "xor",
                           "--epochs", "3", "--save", str(save)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("final:") == 1 and "over 2 MPI ranks" in done.stdout
    assert cb.load(save).evaluate(*cb.datasets.make_xor(200, seed=1))["accuracy"] > 0.5


def test_mpirun_cbackprop_train_checkpoints_and_resumes_as_one_run(tmp_path):
    """mpirun -n 2 cbackprop train … --checkpoint, then --resume under mpirun: rank 0
    writes one checkpoint, every rank resumes its part, and the run ends bitwise
    where the uninterrupted one ends; it prints once."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(Path(cb.__file__).parent.parent))
    whole, part, ckpt = tmp_path / "whole.cbp", tmp_path / "part.cbp", tmp_path / "c.ckpt"

    def train(*options):
        done = subprocess.run([MPIRUN, "-n", "2", sys.executable, "-m", "cbackprop", "train",
                               "xor", "--seed", "1", "--threads", "1", *options], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    train("--epochs", "4", "--save", str(whole))
    train("--epochs", "2", "--checkpoint", str(ckpt))
    assert cb.resume(ckpt).epoch == 2
    done = train("--resume", str(ckpt), "--epochs", "4", "--save", str(part))
    assert done.stdout.count("final:") == 1
    np.testing.assert_array_equal(cb.load(part).theta, cb.load(whole).theta)
