"""Data loaders: IDX (MNIST), CSV, .npz, synthetic makers, digits and the split.

Every file is written here, in tmp_path; nothing is downloaded.
"""

import gzip
import os
import re

import numpy as np
import pytest

import cbackprop as cb
from cbackprop import datasets


def write_idx(path, array, type_code=0x08, compress=False):
    """An IDX file written by hand from the format's definition (big-endian)."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    array = np.asarray(array)
    raw = bytes([0, 0, type_code, array.ndim])
    raw += np.array(array.shape, dtype=">u4").tobytes()
    raw += array.astype(dtype[type_code]).tobytes()
    if compress:
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return raw


def write_mnist(directory, n_train=20, n_test=10, compress=True, seed=0, side=4):
    rng = np.random.default_rng(seed)
    parts = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, compress=compress)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, compress=compress)
        parts[split] = images, labels
    return parts


# ---- IDX -------------------------------------------------------------------

@pytest.mark.parametrize("type_code, values", [
    (0x08, [[0, 255], [7, 128]]),
    (0x09, [[-128, 127], [0, -1]]),
    (0x0B, [[-30000, 30000], [1, 2]]),
    (0x0C, [[-2**31, 2**31 - 1], [5, 6]]),
    (0x0D, [[0.5, -1.25], [3e30, 1e-30]]),
    (0x0E, [[np.pi, -np.e], [1e300, -1e-300]]),
])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, type_code, values, compress):
    path = tmp_path / "a.idx"
    write_idx(path, values, type_code, compress)
    got = datasets.read_idx(path)
    expected = np.array(values, dtype={0x0D: np.float32}.get(type_code, None))
    assert got.shape == (2, 2) and got.dtype.isnative
    np.testing.assert_array_equal(got, expected.astype(got.dtype))


def test_read_idx_three_dimensions(tmp_path):
    cube = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "cube", cube)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "cube"), cube)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_a_truncated_file(tmp_path, compress):
    raw = write_idx(tmp_path / "a", np.zeros((3, 4)), compress=False)
    cut = raw[:-1]
    (tmp_path / "a").write_bytes(gzip.compress(cut) if compress else cut)
    with pytest.raises(ValueError, match="truncated"):
        datasets.read_idx(tmp_path / "a")


def test_read_idx_rejects_trailing_data(tmp_path):
    raw = write_idx(tmp_path / "a", np.zeros((3, 4)))
    (tmp_path / "a").write_bytes(raw + b"\0")
    with pytest.raises(ValueError, match="after the end"):
        datasets.read_idx(tmp_path / "a")


@pytest.mark.parametrize("head", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04",
                                  b"\x00\x00"])
def test_read_idx_checks_the_magic_number(tmp_path, head):
    (tmp_path / "a").write_bytes(head + b"\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(tmp_path / "a")


def test_read_idx_rejects_a_truncated_header_and_zero_dimensions(tmp_path):
    (tmp_path / "a").write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(ValueError, match="header ends early"):
        datasets.read_idx(tmp_path / "a")
    (tmp_path / "b").write_bytes(b"\x00\x00\x08\x00")
    with pytest.raises(ValueError, match="0 dimensions"):
        datasets.read_idx(tmp_path / "b")


def test_read_idx_rejects_absurd_sizes_without_allocating(tmp_path):
    (tmp_path / "a").write_bytes(b"\x00\x00\x0e\x02" + b"\xff\xff\xff\xff" * 2)
    with pytest.raises(ValueError, match="implausibly large"):
        datasets.read_idx(tmp_path / "a")


def test_read_idx_rejects_a_damaged_gzip_stream(tmp_path):
    raw = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x10" + bytes(range(16)))
    (tmp_path / "a.gz").write_bytes(raw[:12] + b"\xff" * 8 + raw[20:])
    with pytest.raises(ValueError, match="gzip"):
        datasets.read_idx(tmp_path / "a.gz")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        datasets.read_idx(tmp_path / "nothing")


# ---- MNIST -----------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_reads_the_four_files(tmp_path, compress):
    parts = write_mnist(tmp_path, compress=compress)
    X_train, X_test, y_train, y_test = datasets.load_mnist(tmp_path)
    assert X_train.shape == (20, 16) and X_test.shape == (10, 16)
    assert X_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_allclose(X_train, parts["train"][0].reshape(20, 16) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_test, parts["t10k"][1])
    raw = datasets.load_mnist(tmp_path, scale=False)[1]
    np.testing.assert_array_equal(raw, parts["t10k"][0].reshape(10, 16))


def test_load_mnist_accepts_the_dotted_spelling(tmp_path):
    write_mnist(tmp_path, compress=False)
    (tmp_path / "train-images-idx3-ubyte").rename(tmp_path / "train-images.idx3-ubyte")
    assert datasets.load_mnist(tmp_path)[0].shape == (20, 16)


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load_mnist(tmp_path / "nowhere")
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="a-file is a file; MNIST is read from the "
                                                 "directory"):
        datasets.load_mnist(tmp_path / "a-file")
    (tmp_path / "a-file").unlink()
    write_mnist(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="test labels"):
        datasets.load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8))
    with pytest.raises(ValueError, match="10 images but .* 9 labels"):
        datasets.load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((10, 1), np.uint8))
    with pytest.raises(ValueError, match=r"expected labels \(n,\)"):
        datasets.load_mnist(tmp_path)


def test_a_network_learns_from_loaded_idx_files(tmp_path):
    # Images whose class is which half is bright: learnable from 4×4 pixels.
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    images = rng.integers(0, 60, (200, 4, 4)).astype(np.uint8)
    images[y == 0, :2] += 190
    images[y == 1, 2:] += 190
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", y, compress=True)
    X_train, X_test, y_train, y_test = datasets.load_mnist(tmp_path)
    net = cb.Network(16, [cb.Dense(8, "relu"), cb.Dense(2, "softmax")], seed=0)
    net.fit(X_train, y_train, optimizer=cb.Adam(lr=0.05), epochs=10)
    assert net.evaluate(X_test, y_test)["accuracy"] > 0.95


# ---- CSV -------------------------------------------------------------------

def test_load_csv_label_last_with_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,0\n3.5,4,1\n-5,6e2,2\n")
    X, y = datasets.load_csv(path)
    np.testing.assert_array_equal(X, [[1, 2], [3.5, 4], [-5, 600]])
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2]


def test_load_csv_label_by_name_and_index_without_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('"label","x 1",x2\n1,0.5,0.25\n0,1.5,2.5\n')
    X, y = datasets.load_csv(path, label_column="label")
    np.testing.assert_array_equal(X, [[0.5, 0.25], [1.5, 2.5]])
    assert y.tolist() == [1, 0]
    X2, y2 = datasets.load_csv(path, label_column="x 1")
    assert y2.dtype == np.float64 and y2.tolist() == [0.5, 1.5]
    bare = tmp_path / "bare.csv"
    bare.write_text("1,0.5,0.25\n0,1.5,2.5\n")
    X3, y3 = datasets.load_csv(bare, label_column=0)
    np.testing.assert_array_equal(X3, X)
    np.testing.assert_array_equal(y3, y)


def test_load_csv_without_labels_and_gzip(tmp_path):
    path = tmp_path / "d.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("1,2\n3,4\n")
    X, y = datasets.load_csv(path, label_column=None)
    assert y is None and X.tolist() == [[1, 2], [3, 4]]


def test_load_csv_explicit_header_flag_and_delimiter(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("1\t2\t3\n4\t5\t6\n")
    X, y = datasets.load_csv(path, header=True, delimiter="\t")
    assert X.tolist() == [[4, 5]] and y.tolist() == [6]


@pytest.mark.parametrize("text, kwargs, match", [
    ("", {}, "empty"),
    ("a,b\n", {}, "no data rows"),
    ("1,2\nx,3\n", {}, "line 2, column 1: found 'x'"),
    ("1,2,3\n4,5\n", {}, "line 2: 2 fields, but line 1 has 3"),
    ("1,2\n", {"delimiter": ";;"}, "one character"),
    ("a,b\n1,2\n", {"label_column": "c"}, "no column 'c'"),
    ("1,2\n", {"label_column": "b"}, "no header"),
    ("1,2\n", {"label_column": 2}, "out of range"),
    ("1,2\n", {"label_column": -3}, ">= -2"),
    ("1\n2\n", {}, "single column"),
])
def test_load_csv_errors(tmp_path, text, kwargs, match):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        datasets.load_csv(path, **kwargs)


def test_load_csv_text_labels(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text("w,h,kind\n1,2,cat\n3,4,dog\n5,6,cat\n")
    X, y = datasets.load_csv(path)
    assert X.tolist() == [[1, 2], [3, 4], [5, 6]] and y.tolist() == ["cat", "dog", "cat"]
    bare = tmp_path / "bare.csv"              # no header: a text label column alone is data
    bare.write_text("1,2,cat\n3,4,dog\n")
    X, y = datasets.load_csv(bare)
    assert X.shape == (2, 2) and y.tolist() == ["cat", "dog"]


def test_load_csv_errors_give_the_line_the_column_and_advice(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n\n1,2,0\n3,,1\n")
    with pytest.raises(ValueError, match=r"line 4, column 2 \('b'\): found an empty cell; "
                                         "fill it in"):
        datasets.load_csv(path)
    path.write_text("a,b,label\n1,2,0\n3,high,1\n")
    with pytest.raises(ValueError, match=r"line 3, column 2 \('b'\): found 'high' where a "
                                         "number belongs; encode"):
        datasets.load_csv(path)
    path.write_text("a,b,label\n1,2,0\n3,4\n")
    with pytest.raises(ValueError, match="line 3: 2 fields, but line 1 has 3"):
        datasets.load_csv(path)


def test_load_csv_quoted_fields_gzip_and_other_delimiters(tmp_path):
    path = tmp_path / "d.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write('x;y;"kind; of animal"\n1.5;2;"big; cat"\n3;4;dog\n')
    X, y = datasets.load_csv(path, label_column="kind; of animal", delimiter=";")
    assert X.tolist() == [[1.5, 2], [3, 4]] and y.tolist() == ["big; cat", "dog"]


def test_load_csv_label_column_type(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2\n")
    with pytest.raises(TypeError, match="label_column"):
        datasets.load_csv(path, label_column=1.5)


# ---- .npz ------------------------------------------------------------------

def test_load_npz(tmp_path):
    X, y = np.arange(6.0).reshape(3, 2), np.array([0, 1, 0])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    X2, y2 = datasets.load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    np.savez(tmp_path / "x.npz", X=X)
    assert datasets.load_npz(tmp_path / "x.npz")[1] is None


def test_load_npz_errors(tmp_path):
    np.savez(tmp_path / "noX.npz", data=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no array named 'X'.*data"):
        datasets.load_npz(tmp_path / "noX.npz")
    np.savez(tmp_path / "flat.npz", X=np.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        datasets.load_npz(tmp_path / "flat.npz")
    np.savez(tmp_path / "obj.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable"):
        datasets.load_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a .npz"):
        datasets.load_npz(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        datasets.load_npz(tmp_path / "missing.npz")


# ---- synthetic ---------------------------------------------------------------

def test_make_spirals():
    X, y = datasets.make_spirals(301, n_classes=4, noise=0.0, seed=3)
    assert X.shape == (301, 2) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [76, 75, 75, 75]
    r = np.hypot(X[:, 0], X[:, 1])
    assert r.max() <= 1.0
    # Without noise each point lies on its arm: angle = 4r + 2πc/k (mod 2π).
    expected = 4 * r + 2 * np.pi * y / 4
    diff = np.angle(np.exp(1j * (np.arctan2(X[:, 1], X[:, 0]) - expected)))
    np.testing.assert_allclose(diff, 0, atol=1e-9)
    np.testing.assert_array_equal(datasets.make_spirals(301, 4, seed=3)[0],
                                  datasets.make_spirals(301, 4, seed=3)[0])


def test_make_xor():
    X, y = datasets.make_xor(500, seed=1)
    assert X.shape == (500, 2) and set(np.unique(y)) == {0, 1}
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] < 0).astype(int))
    Xn, yn = datasets.make_xor(500, noise=0.5, seed=1)
    np.testing.assert_array_equal(yn, y)
    assert not np.array_equal(Xn, X)


def test_make_regression():
    X, y = datasets.make_regression(400, n_features=3, noise=0.0, seed=2)
    assert X.shape == (400, 3) and y.shape == (400,)
    np.testing.assert_allclose(y, np.sin(np.pi * X).sum(axis=1) / np.sqrt(3))
    _, noisy = datasets.make_regression(400, n_features=3, noise=0.1, seed=2)
    assert 0.05 < np.std(noisy - y) < 0.15


@pytest.mark.parametrize("maker, kwargs, error", [
    (datasets.make_spirals, {"n_samples": 0}, ValueError),
    (datasets.make_spirals, {"n_classes": 1}, ValueError),
    (datasets.make_xor, {"noise": -1}, ValueError),
    (datasets.make_regression, {"n_features": 2.0}, TypeError),
])
def test_makers_check_their_arguments(maker, kwargs, error):
    with pytest.raises(error):
        maker(**kwargs)


def test_spirals_are_learnable_but_not_linearly():
    X, y = datasets.make_spirals(600, seed=0, noise=0.1)
    linear = cb.Network(2, [cb.Dense(3, "softmax")], seed=0)
    linear.fit(X, y, optimizer=cb.Adam(lr=0.05), epochs=60)
    deep = cb.Network(2, [cb.Dense(32, "tanh"), cb.Dense(32, "tanh"), cb.Dense(3, "softmax")],
                      seed=0)
    deep.fit(X, y, optimizer=cb.Adam(lr=0.02), epochs=60)
    assert linear.evaluate(X, y)["accuracy"] < 0.7 < 0.9 < deep.evaluate(X, y)["accuracy"]


# ---- digits and the split ----------------------------------------------------

def test_load_digits():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.min() == 0 and X.max() == 16 and sorted(set(y.tolist())) == list(range(10))


def test_train_test_split():
    X, y = np.arange(20).reshape(10, 2), np.arange(10)
    X_tr, X_te, y_tr, y_te = datasets.train_test_split(X, y, 0.3, seed=1)
    assert len(X_te) == 3 and len(X_tr) == 7
    np.testing.assert_array_equal(X_tr[:, 0] // 2, y_tr)
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="rows"):
        datasets.train_test_split(X, y[:5])
    with pytest.raises(ValueError, match="test_size"):
        datasets.train_test_split(X, y, 1.0)


# ---- load_dataset ------------------------------------------------------------

def test_load_dataset_reads_only_the_mnist_split_it_needs(tmp_path):
    write_mnist(tmp_path, n_train=12, n_test=5)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).unlink()
    X, y = datasets.load_dataset(str(tmp_path), "train")
    assert X.shape == (12, 16) and y.shape == (12,)
    with pytest.raises(FileNotFoundError, match="no MNIST test images"):
        datasets.load_dataset(str(tmp_path), "test")


@pytest.mark.parametrize("source", ["digits", "xor"])
def test_load_dataset_refuses_table_options_for_other_sources(source):
    with pytest.raises(ValueError, match="label_column is for .csv/.tsv tables"):
        datasets.load_dataset(source, label_column=0)
    with pytest.raises(ValueError, match="delimiter is for .csv/.tsv tables"):
        datasets.load_dataset(source, delimiter=";")


def test_load_dataset_tables_take_a_delimiter_and_gzip(tmp_path):
    path = tmp_path / "d.tsv.gz"
    with gzip.open(path, "wt") as f:
        f.write("a\tb\tkind\n1\t2\tcat\n3\t4\tdog\n")
    X, y = datasets.load_dataset(str(path))
    assert X.tolist() == [[1, 2], [3, 4]] and y.tolist() == ["cat", "dog"]
    (tmp_path / "d.csv").write_text("a;b\n1;0\n")
    X, y = datasets.load_dataset(str(tmp_path / "d.csv"), delimiter=";")
    assert X.tolist() == [[1]] and y.tolist() == [0]


def test_load_csv_with_the_wrong_delimiter_says_which_one_it_looks_like(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;label\n1;2;0\n3;4;1\n")
    with pytest.raises(ValueError, match=r"line 1: one column only.*--delimiter ';'"):
        cb.datasets.load_csv(path)
    X, y = cb.datasets.load_csv(path, delimiter=";")
    assert X.shape == (2, 2) and y.tolist() == [0, 1]


def test_load_csv_ignores_a_byte_order_mark(tmp_path):
    # Excel's "CSV UTF-8" starts with one; it must not turn the first row into a header
    # (dropping it) nor rename the first column.
    bom = b"\xef\xbb\xbf"
    (tmp_path / "plain.csv").write_bytes(bom + b"1,2,0\r\n3,4,1\r\n5,6,0\r\n")
    X, y = cb.datasets.load_csv(tmp_path / "plain.csv")
    assert X.tolist() == [[1, 2], [3, 4], [5, 6]] and y.tolist() == [0, 1, 0]
    (tmp_path / "named.csv").write_bytes(bom + b"label,a\n0,1\n1,2\n")
    X, y = cb.datasets.load_csv(tmp_path / "named.csv", label_column="label")
    assert X.tolist() == [[1], [2]] and y.tolist() == [0, 1]


@pytest.mark.parametrize("text, where", [
    ("a,b,label\n1,2,0\n3,nan,1\n", "line 3, column 2 ('b'): found 'nan'"),
    ("a,b,label\n1,2,0\n-inf,4,1\n", "line 3, column 1 ('a'): found '-inf'"),
    ("a,label,b\n1,2,0\n3,NaN,1\n", "line 3, column 2 ('label'): found 'NaN'"),
])
def test_load_csv_reports_nan_and_infinity_by_line_and_column(text, where, tmp_path):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(ValueError, match=re.escape(where) + ", not a finite number; fill in"):
        cb.datasets.load_csv(tmp_path / "d.csv", label_column="label")


def test_load_csv_sets_an_id_column_apart_and_names_columns_by_their_place(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("name,a,kind,b\nx1,1,cat,2\nx2,3,dog,oops\n")
    with pytest.raises(ValueError, match=r"line 3, column 4 \('b'\)"):
        datasets.load_csv(path, label_column="kind", id_column="name")
    path.write_text("name,a,kind,b\nx1,1,cat,2\nx2,3,dog,4\n")
    X, y, ids = datasets.load_csv(path, label_column="kind", id_column=0)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert y.tolist() == ["cat", "dog"] and ids == ["x1", "x2"]
    assert datasets.csv_columns(path) == (["name", "a", "kind", "b"], 4)


def _slow_and_fast(monkeypatch, path, **kwargs):
    pytest.importorskip("pyarrow")
    fast = datasets.load_csv(path, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(datasets, "_arrow_csv", lambda *a: None)
        slow = datasets.load_csv(path, **kwargs)
    return fast, slow


@pytest.mark.parametrize("style", ["repr", "short", "exp", "spaces", "quoted", "crlf", "gz",
                                   "ints", "float_labels", "no_header", "text_ids"])
def test_csv_through_pyarrow_reads_what_the_csv_module_reads(style, tmp_path, monkeypatch):
    rng = np.random.default_rng(hash(style) % 2**32)
    X = rng.normal(scale=1e3, size=(40, 3)) * rng.choice([1e-9, 1, 1e9], size=(40, 3))
    fmt = {"short": "{:.3g}", "exp": "{:e}", "ints": "{:.0f}"}.get(style, "{!r}")
    cells = [[fmt.format(float(v)) for v in row] for row in X]
    labels = (rng.normal(size=40).round(3).astype(str) if style == "float_labels"
              else rng.choice(["cat", "dog", "bird"], 40))
    if style == "spaces":
        cells = [[f" {c} " for c in row] for row in cells]
    if style == "quoted":
        cells = [[f'"{c}"' for c in row] for row in cells]
        labels = [f'"{lab}, the {lab}"' for lab in labels]
    head = [] if style == "no_header" else ["id,a,b,c,kind"]
    end = "\r\n" if style == "crlf" else "\n"
    text = end.join(head + [f"r{i}," + ",".join(row) + f",{lab}"
                            for i, (row, lab) in enumerate(zip(cells, labels, strict=True))])
    path = tmp_path / ("t.csv.gz" if style == "gz" else "t.csv")
    if style == "gz":
        import gzip
        path.write_bytes(gzip.compress((text + end).encode()))
    else:
        path.write_text(text + end, newline="")
    kwargs = {"label_column": -1, "id_column": 0}
    fast, slow = _slow_and_fast(monkeypatch, path, **kwargs)
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[0].dtype == slow[0].dtype == np.float64
    assert fast[1].dtype == slow[1].dtype and fast[1].tolist() == slow[1].tolist()
    assert fast[2] == slow[2]


@pytest.mark.parametrize("text, match", [
    ("a,b,y\n1,2,0\n3,,1\n", "line 3, column 2 \\('b'\\): found an empty cell"),
    ("a,b,y\n1,2,0\n3,x,1\n", "line 3, column 2 \\('b'\\): found 'x'"),
    ("a,b,y\n1,2,0\n3,nan,1\n", "line 3, column 2 \\('b'\\): found 'nan', not a finite"),
    ("a,b,y\n1,2,0\n3,4\n", "line 3: 2 fields"),
    ("a,b,y\n1,2,0\n3,4,inf\n", "line 3, column 3 \\('y'\\): found 'inf'"),
    ("a,b,y\n1,2,0\n3,4,\n", "line 3, column 3 \\('y'\\): found an empty cell"),
])
def test_csv_errors_are_the_same_with_pyarrow(text, match, tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        datasets.load_csv(path)


def _animals_frame():
    pd = pytest.importorskip("pandas")
    return pd.DataFrame({"weight": [1.0, 2.5, 0.5, 3.0], "species": ["cat", "dog", "cat", "dog"],
                         "legs": [4, 4, 4, 3]})


def test_parquet_and_arrow_files_and_data_frames_give_x_and_y(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa

    df = _animals_frame()
    df.to_parquet(tmp_path / "a.parquet")
    df.to_feather(tmp_path / "a.arrow")
    for X, y in (datasets.load_parquet(tmp_path / "a.parquet", label_column="species"),
                 datasets.load_arrow(tmp_path / "a.arrow", label_column="species"),
                 datasets.from_table(df, label_column="species"),
                 datasets.from_table(pa.Table.from_pandas(df), label_column=1),
                 datasets.load_dataset(str(tmp_path / "a.parquet"), label_column="species")):
        np.testing.assert_array_equal(X, [[1.0, 4], [2.5, 4], [0.5, 4], [3.0, 3]])
        assert X.dtype == np.float64 and y.tolist() == ["cat", "dog", "cat", "dog"]
    X, y = datasets.from_table(df.drop(columns="species"))
    assert y.dtype == np.int64 and y.tolist() == [4, 4, 4, 3]


@pytest.mark.parametrize("make, match", [
    (lambda df: df, "column 'species' holds text"),
    (lambda df: df.astype({"species": "category"}), "column 'species' holds categories"),
    (lambda df: df.assign(species=[1.0, None, 2.0, 3.0]), "column 'species' has missing"),
])
def test_feature_columns_of_text_categories_or_gaps_are_refused_by_name(make, match,
                                                                        tmp_path):
    df = make(_animals_frame())
    with pytest.raises((TypeError, ValueError), match=match):
        datasets.from_table(df, label_column="legs")
    pytest.importorskip("pyarrow")
    df.to_parquet(tmp_path / "a.parquet")
    with pytest.raises((TypeError, ValueError), match=f"a.parquet {match}"):
        datasets.load_parquet(tmp_path / "a.parquet", label_column="legs")


def test_fit_and_predict_take_data_frames_and_arrow_tables():
    pa = pytest.importorskip("pyarrow")
    import cbackprop as cb

    df = _animals_frame().drop(columns="species")
    net = cb.Network(2, [cb.Dense(2, "softmax")], seed=0)
    net.fit(df, [0, 1, 0, 1], epochs=2)
    np.testing.assert_array_equal(net.predict(df), net.predict(df.to_numpy(float)))
    np.testing.assert_array_equal(net.predict(pa.Table.from_pandas(df)),
                                  net.predict(df.to_numpy(float)))
    with pytest.raises(TypeError, match="X column 'species' holds text"):
        net.predict(_animals_frame()[["weight", "species"]])


def test_estimators_name_a_text_column_and_keep_column_names():
    pytest.importorskip("sklearn")
    from cbackprop.estimators import MLPClassifier

    df = _animals_frame()
    with pytest.raises(TypeError, match="X column 'species' holds text"):
        MLPClassifier(max_iter=2).fit(df, [0, 1, 0, 1])
    clf = MLPClassifier(max_iter=2, random_state=0).fit(df.drop(columns="species"),
                                                        [0, 1, 0, 1])
    assert clf.feature_names_in_.tolist() == ["weight", "legs"]


def _anonymous_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_fit_on_a_memory_mapped_npy_trains_in_place(tmp_path):
    """A .npy in the network's dtype, opened with mmap_mode="r", is trained on where it
    lies: the process's own (anonymous) memory grows by far less than the file."""
    import cbackprop as cb

    n, k = 100_000, 200                      # 80 MB of float32
    path = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k))
    rng = np.random.default_rng(0)
    for i in range(0, n, 20_000):
        X[i:i + 20_000] = rng.normal(size=(20_000, k))
    y = (X[:, 0] > 0).astype(np.int64)
    X.flush()
    del X
    X = np.load(path, mmap_mode="r")
    net = cb.Network(k, [cb.Dense(8, "relu"), cb.Dense(2, "softmax")], seed=0)
    before = _anonymous_kb()
    net.fit(X, y, epochs=1, batch_size=256)
    grown_mb = (_anonymous_kb() - before) / 1e3
    assert grown_mb < 0.25 * path.stat().st_size / 1e6, grown_mb
    with pytest.warns(UserWarning, match="copied whole into memory"):
        cb.Network(k, [cb.Dense(2, "softmax")], dtype="float64").predict(X[:10])


def test_polars_frames_go_straight_to_fit_predict_and_the_estimators():
    pl = pytest.importorskip("polars")
    pytest.importorskip("pyarrow")
    import cbackprop as cb

    frame = pl.DataFrame({"weight": [1.0, 2.5, 0.5, 3.0], "species": ["cat", "dog", "cat", "dog"],
                          "legs": [4, 4, 4, 3]})
    X, y = datasets.from_table(frame, label_column="species")
    np.testing.assert_array_equal(X, [[1.0, 4], [2.5, 4], [0.5, 4], [3.0, 3]])
    assert y.tolist() == ["cat", "dog", "cat", "dog"]
    features = frame.drop("species")
    net = cb.Network(2, [cb.Dense(2, "softmax")], seed=0)
    net.fit(features, [0, 1, 0, 1], epochs=2)
    np.testing.assert_array_equal(net.predict(features), net.predict(X))
    with pytest.raises(TypeError, match="X column 'species' holds text"):
        net.predict(frame.select("weight", "species"))
    with pytest.raises(TypeError, match="column 'species' holds categories"):
        datasets.from_table(frame.with_columns(pl.col("species").cast(pl.Categorical)),
                            label_column="legs")
    pytest.importorskip("sklearn")
    from cbackprop.estimators import MLPClassifier

    with pytest.raises(TypeError, match="X column 'species' holds text"):
        MLPClassifier(max_iter=2).fit(frame, [0, 1, 0, 1])
