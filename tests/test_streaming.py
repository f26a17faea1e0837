"""Data larger than memory: fit on a Parquet file read one buffer of rows at a time
(`cb.datasets.ParquetStream`, `cbackprop.streaming`), and `train --stream`."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import cbackprop as cb  # noqa: E402
from cbackprop.__main__ import main  # noqa: E402
from cbackprop.streaming import Stream  # noqa: E402


def _write(path, n=6000, k=5, group=1000, text=True, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    columns = {f"f{j}": X[:, j] for j in range(k)}
    columns["label"] = np.array(["no", "yes"])[y] if text else y
    pq.write_table(pa.table(columns), path, row_group_size=group)
    return X, y


def _net(k=5, seed=0):
    return cb.Network(k, [cb.Dense(8, "relu"), cb.Dense(2, "softmax")], seed=seed, n_threads=1)


def test_a_stream_trains_reproducibly_with_validation_and_health(tmp_path):
    X, y = _write(tmp_path / "a.parquet")
    stream = cb.datasets.ParquetStream(tmp_path / "a.parquet", label_column="label",
                                       classes=["no", "yes"], buffer_rows=1500)
    assert (stream.n_rows, stream.n_features, stream.n_groups) == (6000, 5, 6)
    assert stream.label_values().tolist() == ["no", "yes"]
    runs, seen = [], []
    for _ in range(2):
        net = _net()
        seen.clear()
        history = net.fit(stream, epochs=3, batch_size=64, validation_data=(X, y),
                          health=True, callbacks=[lambda e, logs: seen.append(e)])
        runs.append(net.theta.copy())
    np.testing.assert_array_equal(runs[0], runs[1])     # the seed fixes the order
    assert seen == [0, 1, 2] and len(history["health"]) == 3 * 2    # epochs × layers
    assert history["val_accuracy"][-1] > 0.7
    assert history["loss"][-1] < history["loss"][0]


def test_unshuffled_a_stream_is_the_array_fit_and_one_buffer_shuffles_as_it_does(tmp_path):
    """The same trainer: in file order, a stream gives the array's fit bitwise; with one
    row group in one buffer, the first epoch's order is the array fit's too."""
    X, y = _write(tmp_path / "a.parquet", text=False)
    stream = cb.datasets.ParquetStream(tmp_path / "a.parquet", buffer_rows=1000)
    a, b = _net(), _net()
    a.fit(stream, epochs=2, batch_size=64, shuffle=False)
    b.fit(X, y, epochs=2, batch_size=64, shuffle=False)
    np.testing.assert_array_equal(a.theta, b.theta)
    _write(tmp_path / "one.parquet", group=6000, text=False)
    whole = cb.datasets.ParquetStream(tmp_path / "one.parquet", buffer_rows=6400)
    a, b = _net(), _net()
    a.fit(whole, epochs=1, batch_size=64)
    b.fit(X, y, epochs=1, batch_size=64)
    np.testing.assert_array_equal(a.theta, b.theta)


class _Recorded(Stream):
    """A stream of n rows in groups of g, recording the order its groups are asked in."""

    def __init__(self, n=1000, g=100, buffer_rows=250):
        self.n_rows, self.n_features, self.n_groups = n, 2, n // g
        self.buffer_rows, self.g, self.asked = buffer_rows, g, []

    def parts(self, groups, dtype):
        self.asked.append([int(i) for i in groups])
        for i in groups:
            rows = np.arange(i * self.g, (i + 1) * self.g)
            yield np.c_[rows, -rows].astype(dtype) / self.n_rows, rows % 2, f"group {i}"


def test_each_epoch_takes_the_groups_in_a_fresh_random_order():
    stream = _Recorded()
    net = cb.Network(2, [cb.Dense(2, "softmax")], seed=3)
    net.fit(stream, epochs=3, batch_size=50)
    assert len(stream.asked) == 3
    for order in stream.asked:
        assert sorted(order) == list(range(10))
    assert len({tuple(o) for o in stream.asked}) == 3
    net = cb.Network(2, [cb.Dense(2, "softmax")], seed=3)
    stream = _Recorded()
    net.fit(stream, epochs=2, batch_size=50, shuffle=False)
    assert stream.asked == [list(range(10))] * 2


def test_what_a_stream_refuses_it_says(tmp_path):
    X, y = _write(tmp_path / "a.parquet")
    stream = cb.datasets.ParquetStream(tmp_path / "a.parquet", label_column="label",
                                       classes=["no", "yes"])
    with pytest.raises(ValueError, match="checkpoint= is for data in memory"):
        _net().fit(stream, checkpoint=tmp_path / "run.ckpt")
    assert not (tmp_path / "run.ckpt").exists()
    with pytest.raises(TypeError, match="X is a stream"):
        _net().predict(stream)
    with pytest.raises(ValueError, match="sample_weight is for data in memory"):
        _net().fit(stream, sample_weight=np.ones(6000))
    with pytest.raises(ValueError, match="y must be None when X is a stream"):
        _net().fit(stream, y)
    with pytest.raises(ValueError, match="X has 5 features per row, but the network expects 4"):
        _net(k=4).fit(stream)
    with pytest.raises(ValueError, match="not among the classes: no"):
        _net().fit(cb.datasets.ParquetStream(tmp_path / "a.parquet", label_column="label",
                                             classes=["yes", "maybe"]))
    assert cb.datasets.ParquetStream(tmp_path / "a.parquet").classes == ["no", "yes"]
    frame = pa.table({"a": ["x", "y"], "b": [1.0, 2.0], "label": [0, 1]})
    pq.write_table(frame, tmp_path / "text.parquet")
    with pytest.raises(TypeError, match="column 'a' holds text"):
        cb.datasets.ParquetStream(tmp_path / "text.parquet")
    pq.write_table(pa.table({"a": [1.0, float("nan"), 2.0], "label": [0, 1, 0]}),
                   tmp_path / "nan.parquet")
    with pytest.raises(ValueError, match=r"nan.parquet, row group 0 contains NaN"):
        cb.Network(1, [cb.Dense(2, "softmax")]).fit(
            cb.datasets.ParquetStream(tmp_path / "nan.parquet"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cb.datasets.ParquetStream(tmp_path / "missing.parquet")


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np
    import cbackprop as cb

    def anonymous_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("RssAnon")) / 1e3

    stream = cb.datasets.ParquetStream(sys.argv[1], label_column="label", buffer_rows=8192)
    net = cb.Network(stream.n_features, [cb.Dense(16, "relu"), cb.Dense(2, "softmax")],
                     seed=0)
    net.fit(np.zeros((256, stream.n_features)), np.zeros(256, int), batch_size=256)
    for _ in stream.parts(np.arange(1), net.dtype):   # pyarrow's one-time pools
        pass
    before, peak, done = anonymous_mb(), [0.0], []

    def watch():
        while not done:
            peak[0] = max(peak[0], anonymous_mb() - before)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    history = net.fit(stream, epochs=1, batch_size=256)
    done.append(True)
    watcher.join()
    print(json.dumps({"peak_mb": max(peak[0], anonymous_mb() - before),
                      "loss": history["loss"][-1]}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_fit_on_a_parquet_file_four_times_the_memory_budget_stays_within_it(tmp_path):
    """A fit on a 35 MB Parquet file holds one buffer of rows (8192 × 20 float32: 0.7 MB),
    and one block of a row group: the process's anonymous memory, sampled every 2 ms
    during the fit, grows by less than BUDGET_MB, a quarter of the file (measured in a
    fresh process, after pyarrow's reader has set up its pools on one row group)."""
    BUDGET_MB = 8
    path = tmp_path / "big.parquet"
    n, k, group = 300_000, 20, 25_000
    rng = np.random.default_rng(0)
    writer = None
    for _ in range(0, n, group):
        X = rng.normal(size=(group, k)).astype(np.float32)
        table = pa.table({**{f"f{j}": X[:, j] for j in range(k)},
                          "label": (X[:, 0] > 0).astype(np.int64)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    size_mb = path.stat().st_size / 1e6
    assert size_mb > 4 * BUDGET_MB
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(path)], env=env,
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["peak_mb"] < BUDGET_MB, (result, size_mb)
    assert result["loss"] < 0.5


def test_train_stream_on_the_command_line(tmp_path, capsys):
    X, y = _write(tmp_path / "a.parquet", n=3000, group=500)
    data, model = str(tmp_path / "a.parquet"), str(tmp_path / "m.cbp")
    assert main(["train", data, "--label-column", "label", "--stream", "--buffer-rows",
                 "1024", "--epochs", "3", "--save", model]) == 0
    out = capsys.readouterr().out
    assert "streamed from its 6 row groups, 1024 rows in memory at a time" in out
    assert "labels: 2 classes (no, yes)" in out
    assert main(["evaluate", model, data]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["train", data, "--stream", "--init", model, "--epochs", "1", "-q"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("options, message", [
    (["--validation-split", "0.1"], "--validation-split is not for --stream"),
    (["--early-stopping", "2"], "--early-stopping is not for --stream"),
    (["--checkpoint", "run.ckpt"], "--checkpoint is not for --stream"),
    (["--buffer-rows", "0"], "--buffer-rows: "),
])
def test_train_stream_refuses_in_the_command_lines_words(tmp_path, capsys, options, message):
    _write(tmp_path / "a.parquet", n=600, group=100)
    with pytest.raises(SystemExit) as stop:
        main(["train", str(tmp_path / "a.parquet"), "--stream", *options])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_stream_needs_a_parquet_file_and_buffer_rows_needs_stream(capsys):
    for argv, message in ((["train", "digits", "--stream"], "--stream reads a .parquet file"),
                          (["train", "digits", "--buffer-rows", "9"],
                           "--buffer-rows is for --stream")):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err


#: Python's words, which the command line's errors never hold (as tests/test_cli_words.py).
PYTHON_WORDS = r"np\.|numpy|\[Errno|label_column|Traceback|ndarray|dtype\(|array\(|" \
               r"\bNone\b|sample_weight|validation_data|\bfit\(|checkpoint=|comm="


def test_train_streams_errors_speak_command_line_words(tmp_path, monkeypatch, capsys):
    import re

    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "a.parquet", n=600, group=100)
    pq.write_table(pa.table({"a": [1.0, float("nan")] * 50, "label": [0, 1] * 50}),
                   tmp_path / "nan.parquet")
    pq.write_table(pa.table({"a": ["x", "y"] * 50, "b": [1.0, 2.0] * 50, "label": [0, 1] * 50}),
                   tmp_path / "text.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0],
                             "c": [1.0, 2.0, 3.0], "d": [1.0, 2.0, 3.0],
                             "e": [1.0, 2.0, 3.0], "label": ["no", "yes", "maybe"]}),
                   tmp_path / "other.parquet")
    assert main(["train", "a.parquet", "--stream", "--epochs", "1", "-q", "--save",
                 "m.cbp"]) == 0
    capsys.readouterr()
    cases = [
        ("train nan.parquet --stream -q", "nan.parquet, row group 0 contains NaN"),
        ("train text.parquet --stream -q", "column 'a' holds text"),
        ("train a.parquet --stream --label-column kind", "--label-column kind: a.parquet has "
                                                         "no column 'kind'"),
        ("train other.parquet --stream --init m.cbp -q", "labels the model was not trained "
                                                         "on: maybe"),
        ("train a.parquet --stream --validation-split 0.2", "--validation-split is not for "
                                                            "--stream"),
        ("train a.parquet --stream --resume run.ckpt", "--resume is not for --stream"),
        ("train a.csv --stream", "--stream reads a .parquet file"),
    ]
    for command, says in cases:
        try:
            status = main(command.split())
        except SystemExit as exit_:
            status = exit_.code
        err = capsys.readouterr().err
        assert status in (1, 2) and err.count("\n") == 1 and says in err, (command, err)
        assert not re.search(PYTHON_WORDS, err), err
