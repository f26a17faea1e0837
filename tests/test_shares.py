"""Each rank reads only its rows: `datasets.load_share` (a memory-mapped .npy, an
.npz's members, a Parquet file's row groups), its memory, and `mpirun -n N
cbackprop train DATA` reading shares."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cbackprop as cb
from cbackprop import datasets

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(Path(cb.__file__).parent.parent))
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep
                      + os.environ.get("PATH", ""))


def write(path: Path, X, y, kind: str, row_group: int = 7) -> Path:
    """X, y into a file of `kind`: npy (X alone), npz, npz-compressed or parquet
    (row groups of `row_group` rows)."""
    if kind == "npy":
        np.save(path / "d.npy", X)
        return path / "d.npy"
    if kind == "npz":
        np.savez(path / "d.npz", X=X, y=y)
        return path / "d.npz"
    if kind == "npz-compressed":
        np.savez_compressed(path / "c.npz", X=X, y=y)
        return path / "c.npz"
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({**{f"f{j}": X[:, j] for j in range(X.shape[1])}, "label": y})
    pq.write_table(table, path / "d.parquet", row_group_size=row_group)
    return path / "d.parquet"


@pytest.mark.parametrize("n,size", [(10, 3), (3, 5), (100, 1), (0, 2)])
def test_shares_are_contiguous_blocks_covering_every_row_once(n, size):
    shares = [datasets.share_rows(n, r, size) for r in range(size)]
    rows = np.concatenate([np.arange(n)[s] for s in shares])
    np.testing.assert_array_equal(rows, np.arange(n))
    counts = [s.stop - s.start for s in shares]
    assert max(counts) - min(counts) <= 1
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        datasets.share_rows(n, 2, 2)


@pytest.mark.parametrize("kind", ["npy", "npz", "npz-compressed", "parquet"])
def test_a_share_is_the_whole_files_rows(kind, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((45, 4)).astype(np.float32)
    y = rng.integers(0, 3, 45)
    path = write(tmp_path, X, y, kind)
    assert datasets.count_rows(path) == 45
    parts = [datasets.load_share(path, r, 4) for r in range(4)]
    for r, (Xr, yr) in enumerate(parts):
        rows = datasets.share_rows(45, r, 4)
        np.testing.assert_array_equal(Xr, X[rows])
        if kind == "npy":
            assert yr is None
        else:
            np.testing.assert_array_equal(yr, y[rows])
    if kind != "npy":
        np.testing.assert_array_equal(datasets.read_labels(path), y)


def test_string_labels_of_a_parquet_file_read_in_shares_and_whole(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    labels = ["cat", "dog", "emu"] * 5
    pq.write_table(pa.table({"a": np.arange(15.0), "kind": labels}), tmp_path / "s.parquet",
                   row_group_size=4)
    X, y = datasets.load_share(tmp_path / "s.parquet", 1, 2, label_column="kind")
    np.testing.assert_array_equal(X[:, 0], np.arange(8.0, 15.0))
    assert list(y) == labels[8:]
    assert list(datasets.read_labels(tmp_path / "s.parquet", "kind")) == labels


def test_what_cannot_be_read_in_shares_is_refused_by_name(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((4, 3))))
    with pytest.raises(ValueError, match="C-ordered"):
        datasets.load_share(tmp_path / "f.npy", 0, 2)
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        datasets.load_share(tmp_path / "o.npy", 0, 2)
    np.savez(tmp_path / "n.npz", Z=np.ones((4, 3)))
    with pytest.raises(ValueError, match="no array named 'X'"):
        datasets.load_share(tmp_path / "n.npz", 0, 2)
    (tmp_path / "t.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"\.npy, \.npz or \.parquet"):
        datasets.load_share(tmp_path / "t.csv", 0, 2)
    with pytest.raises(FileNotFoundError):
        datasets.load_share(tmp_path / "missing.npz", 0, 2)


MEMORY_PROBE = """
import sys, json
from cbackprop import datasets
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
path, rank, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
datasets.read_rows(path, slice(0, 1))     # imports (pyarrow, pandas) before the first figure
before = rss()
X, y = datasets.load_share(path, rank, size)
print(json.dumps({"grew": rss() - before, "share": X.nbytes}))
"""


@pytest.mark.parametrize("kind", ["npy", "npz", "npz-compressed", "parquet"])
def test_reading_a_share_takes_the_memory_of_the_share_not_of_the_file(kind, tmp_path):
    """RssAnon (/proc/self/status) of a process reading the last of 8 shares of a
    64 MB file grows by the share it returns (8 MB; from Parquet, whose tables
    convert to float64, 16 MB) and buffers (Parquet: a row group at a time, and
    its footer), never by the file."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16_000, 1000)).astype(np.float32)     # 64 MB
    y = rng.integers(0, 10, 16_000)
    path = write(tmp_path, X, y, kind, row_group=1000)
    del X
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), "7", "8"],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    parquet = kind == "parquet"
    assert figures["share"] == (16e6 if parquet else 8e6)
    # Parquet: a row group's table and its float64 rows at a time (12 MB), and the
    # footer of 16 groups × 1001 columns (~10 MB, kept by the allocators).
    assert figures["grew"] <= figures["share"] + ((24 if parquet else 4) << 20), figures
    assert figures["grew"] < figures["share"] * 8 / 3, figures      # 8 shares: the file


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install mpich)")
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_training_on_their_shares_hold_their_share_not_the_file(ranks, tmp_path):
    """mpirun -n R: each rank reads its share of a 32 MB .npz and trains on it
    (fit(comm=)); its RssAnon grows by its share plus the model and the fit's
    workspace, measured per rank."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8_000, 1000)).astype(np.float32)
    y = rng.integers(0, 10, 8_000)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = tmp_path / "out.json"
    done = subprocess.run([MPIRUN, "-n", str(ranks), sys.executable,
                           str(Path(__file__).parent / "mpi" / "share_ranks.py"),
                           str(tmp_path / "d.npz"), str(out)], env=ENV, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert sum(r["rows"] for r in report["ranks"]) == 8_000
    for r in report["ranks"]:
        read = r["read"] - r["before"]
        assert read <= 1.1 * r["share_bytes"] + (4 << 20), r
        # The fit: the model, its gradient, optimizer state and rollback copies, a
        # workspace of 256 rows, a few MB of MPI buffers and Python objects.
        assert r["trained"] - r["before"] <= r["share_bytes"] + 8 * r["model_bytes"] + (24 << 20), r
        assert r["trained"] - r["before"] < X.nbytes / ranks + (24 << 20)


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install mpich)")
@pytest.mark.parametrize("kind", ["npz", "parquet"])
def test_mpirun_cbackprop_train_reads_a_share_per_rank(kind, tmp_path):
    """mpirun -n 2 cbackprop train DATA.npz / DATA.parquet: each rank reads its rows;
    the classes come from every label (a class only one share holds still
    makes the network's output), and the model is saved once."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] > 0).astype(np.int64)
    y[-1] = 2                       # a class only the last share holds
    path = write(tmp_path, X, y, kind)
    save = tmp_path / "m.cbp"
    done = subprocess.run([MPIRUN, "-n", "2", sys.executable, "-m", "cbackprop", "train",
                           str(path), "--epochs", "20", "--lr", "0.05", "--hidden", "8",
                           "--save", str(save), "--validation-split", "0.2"],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "each reading only its share of the rows" in done.stdout
    assert "300 training rows" not in done.stdout and "240 training rows" in done.stdout
    assert done.stdout.count("final:") == 1
    net = cb.load(save)
    assert net.n_outputs == 3
    assert net.evaluate(X, y)["accuracy"] > 0.6
