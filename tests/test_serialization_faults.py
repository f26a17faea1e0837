"""save / load under faults: every damaged, foreign or crafted file raises a
clear ValueError without reading or allocating beyond its size; saving is
atomic and deterministic; load never unpickles."""

import hashlib
import json
import os
import pickle
import stat
import tracemalloc

import numpy as np
import pytest

import cbackprop as cb
from cbackprop import serialization

NOT_VALID = "not a valid cbackprop model file"


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    net = cb.Network(5, [cb.Dense(4, "tanh", dropout=0.1), cb.Dense(3, "softmax")],
                     dtype="float32", seed=7, alpha=1e-3)
    net.fit(X, y, optimizer=cb.SGD(lr=0.1), epochs=2, batch_size=16)
    return net, X, y


@pytest.fixture
def saved(trained, tmp_path):
    path = tmp_path / "model.safetensors"
    trained[0].save(path)
    return path, path.read_bytes()


def load_bytes(tmp_path, blob: bytes):
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(blob)
    return cb.load(path)


def split(blob: bytes):
    """(header dict, data bytes) of a saved file."""
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def reseal(header: dict, data: bytes) -> bytes:
    """A crafted file with a valid checksum: damage the checksum cannot catch."""
    return serialization.seal(header, data)


# ---- round trip and determinism -------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_keeps_everything_including_the_shuffling_stream(tmp_path, dtype):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    net = cb.Network(3, [cb.Dense(6, "relu", dropout=0.2), cb.Dense(2)], dtype=dtype, seed=3)
    net.fit(X, y, epochs=2, batch_size=8)
    net.save(tmp_path / "m")
    loaded = cb.load(tmp_path / "m")
    assert loaded.get_config() == net.get_config()
    assert loaded.theta.dtype == net.theta.dtype
    np.testing.assert_array_equal(loaded.theta, net.theta)
    # The next fit shuffles and drops out the same way: the model is whole.
    net.fit(X, y, optimizer=cb.SGD(lr=0.01), epochs=2, batch_size=8)
    loaded.fit(X, y, optimizer=cb.SGD(lr=0.01), epochs=2, batch_size=8)
    np.testing.assert_array_equal(loaded.theta, net.theta)


def test_saving_twice_gives_identical_bytes(trained, tmp_path):
    net = trained[0]
    net.save(tmp_path / "a")
    net.save(tmp_path / "b")
    cb.load(tmp_path / "a").save(tmp_path / "c")
    a = (tmp_path / "a").read_bytes()
    assert a == (tmp_path / "b").read_bytes() == (tmp_path / "c").read_bytes()
    other = cb.Network.from_config(net.get_config())
    other.save(tmp_path / "d")
    assert (tmp_path / "d").read_bytes() != a   # the bytes do depend on the parameters


def test_header_is_aligned_and_safetensors_can_read_it(saved, trained):
    path, blob = saved
    n = int.from_bytes(blob[:8], "little")
    assert n % 8 == 0
    st = pytest.importorskip("safetensors.numpy")
    tensors = st.load_file(str(path))
    for i, (W, b) in enumerate(trained[0].params):
        np.testing.assert_array_equal(tensors[f"layers.{i}.W"], W)
        np.testing.assert_array_equal(tensors[f"layers.{i}.b"], b)


def test_load_never_unpickles(saved, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load used pickle")
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", refuse)
    net = cb.load(saved[0])
    assert isinstance(net, cb.Network)


# ---- damage ---------------------------------------------------------------

def test_every_truncation_is_caught(saved, tmp_path):
    blob = saved[1]
    for size in range(len(blob)):
        with pytest.raises(ValueError, match=NOT_VALID):
            load_bytes(tmp_path, blob[:size])


def test_every_single_bit_flip_is_caught(saved, tmp_path):
    blob = saved[1]
    for i in range(len(blob)):
        damaged = bytearray(blob)
        damaged[i] ^= 1 << (i % 8)
        with pytest.raises(ValueError, match=NOT_VALID):
            load_bytes(tmp_path, bytes(damaged))


def test_appended_bytes_are_caught(saved, tmp_path):
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_bytes(tmp_path, saved[1] + b"\0")


@pytest.mark.parametrize("blob", [
    b"", b"\0" * 7, b"\0" * 8, b"\0" * 4096, b"\xff" * 64,
    (2**63).to_bytes(8, "little") + b"{}",
    (100).to_bytes(8, "little") + b"{}",
    (2).to_bytes(8, "little") + b"[]",
    (2).to_bytes(8, "little") + b"{}",
    (4).to_bytes(8, "little") + b"\xff\xfe{}",
    (200_000).to_bytes(8, "little") + b"[" * 200_000,     # nesting deeper than the recursion limit
], ids=["empty", "7-bytes", "8-zero-bytes", "zeros", "ff", "huge-header-length",
        "header-past-end", "list-header", "empty-header", "not-utf8", "deep-nesting"])
def test_empty_random_and_malformed_files(tmp_path, blob):
    with pytest.raises(ValueError, match=NOT_VALID):
        load_bytes(tmp_path, blob)


def test_random_files(tmp_path):
    rng = np.random.default_rng(0)
    for size in (1, 9, 100, 1000, 100_000):
        with pytest.raises(ValueError, match=NOT_VALID):
            load_bytes(tmp_path, rng.bytes(size))


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"layers.0.W": np.zeros((2, 2), np.float32)}, str(tmp_path / "f"))
    with pytest.raises(ValueError, match=NOT_VALID):
        cb.load(tmp_path / "f")


# ---- crafted files (valid checksum, lying header or config) --------------

def _edit_config(header, **changes):
    config = json.loads(header["__metadata__"]["config"])
    config.update(changes)
    header["__metadata__"]["config"] = json.dumps(config, sort_keys=True)


CRAFTS = {
    "absurd-shape": lambda h, d: (h["layers.0.W"].update(shape=[2**40, 2**40]), d),
    "absurd-offsets": lambda h, d: (h["layers.0.W"].update(data_offsets=[0, 2**62]), d),
    "negative-offsets": lambda h, d: (h["layers.0.b"].update(data_offsets=[-16, 0]), d),
    "overlapping-offsets": lambda h, d: (h["layers.0.b"].update(data_offsets=[0, 16]), d),
    "float-offsets": lambda h, d: (h["layers.0.W"].update(data_offsets=[0.5, 80.5]), d),
    "dtype-F16": lambda h, d: (h["layers.0.W"].update(dtype="F16"), d),
    "dtype-I64": lambda h, d: (h["layers.0.W"].update(dtype="I64"), d),
    "dtype-object": lambda h, d: (h["layers.0.W"].update(dtype={"py/object": "os.system"}), d),
    "missing-tensor": lambda h, d: (h.pop("layers.1.b"), d),
    "extra-tensor": lambda h, d: (h.update({"extra": {"dtype": "F32", "shape": [1],
                                                      "data_offsets": [0, 4]}}), d),
    "truncated-data": lambda h, d: (None, d[:-4]),
    "extra-data": lambda h, d: (None, d + b"\0" * 4),
    "config-n_inputs-huge": lambda h, d: (_edit_config(h, n_inputs=10**12), d),
    "config-n_inputs-zero": lambda h, d: (_edit_config(h, n_inputs=0), d),
    "config-n_inputs-str": lambda h, d: (_edit_config(h, n_inputs="5"), d),
    "config-n_inputs-bool": lambda h, d: (_edit_config(h, n_inputs=True), d),
    "config-units-huge": lambda h, d: (_edit_config(h, layers=[
        {"units": 2**40, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]), d),
    "config-layers-not-list": lambda h, d: (_edit_config(h, layers=5), d),
    "config-dtype-float16": lambda h, d: (_edit_config(h, dtype="float16"), d),
    "config-dtype-F32-for-F64": lambda h, d: (_edit_config(h, dtype="float64"), d),
    "config-activation-unknown": lambda h, d: (_edit_config(h, layers=[
        {"units": 4, "activation": "os.system"}, {"units": 3, "activation": "softmax"}]), d),
    "config-extra-key": lambda h, d: (_edit_config(h, evil=1), d),
    "config-not-json": lambda h, d: (h["__metadata__"].update(config="{not json"), d),
    "config-not-object": lambda h, d: (h["__metadata__"].update(config="[1, 2]"), d),
    "format-other": lambda h, d: (h["__metadata__"].update(format="cbackprop-0"), d),
    "rng-negative": lambda h, d: (h["__metadata__"].update(rng_state="-1"), d),
    "rng-too-big": lambda h, d: (h["__metadata__"].update(rng_state=str(2**64)), d),
    "rng-not-int": lambda h, d: (h["__metadata__"].update(rng_state="seven"), d),
    "rng-not-decimal": lambda h, d: (h["__metadata__"].update(rng_state="1_000"), d),
    "rng-not-str": lambda h, d: (h["__metadata__"].update(rng_state=7), d),
    "rng-missing": lambda h, d: (h["__metadata__"].pop("rng_state"), d),
    "metadata-missing": lambda h, d: (h.pop("__metadata__"), d),
    "metadata-unknown": lambda h, d: (h["__metadata__"].update(evil="1"), d),
    "tensor-checkpoint-like": lambda h, d: (h.update({"checkpoints.x": {
        "dtype": "F32", "shape": [1], "data_offsets": [len(d), len(d) + 4]}}), d + bytes(4)),
}


@pytest.mark.parametrize("craft", list(CRAFTS), ids=list(CRAFTS))
def test_crafted_files_raise_without_large_allocations(saved, tmp_path, craft):
    header, data = split(saved[1])
    header, data = json.loads(json.dumps(header)), bytes(data)
    _, data = CRAFTS[craft](header, data)
    if "__metadata__" not in header:
        n = json.dumps(header).encode()
        blob = len(n).to_bytes(8, "little") + n + data
    else:
        blob = reseal(header, data)
    path = tmp_path / "crafted"
    path.write_bytes(blob)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=NOT_VALID):
            cb.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(blob) + (1 << 20), f"load allocated {peak} bytes"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_non_finite_parameters_are_refused_even_with_a_valid_checksum(tmp_path, dtype, value):
    net = cb.Network(3, [cb.Dense(4, "tanh"), cb.Dense(2)], dtype=dtype, seed=0)
    net.save(tmp_path / "m")
    header, data = split((tmp_path / "m").read_bytes())
    theta = np.frombuffer(data, dtype=net.theta.dtype).copy()
    theta[5] = value
    with pytest.raises(ValueError, match=NOT_VALID + ".*bad parameters"):
        load_bytes(tmp_path, reseal(header, theta.tobytes()))


def seal_edited(header: dict, data: bytes, edit) -> bytes:
    """A file whose header is edit(the JSON text seal writes), checksum recomputed:
    edits that a dict cannot hold (a repeated key)."""
    text = json.dumps({**header, "__metadata__": {**header["__metadata__"], "sha256": "0" * 64}},
                      sort_keys=True, separators=(",", ":")).encode()
    text = edit(text.decode()).encode()
    text += b" " * (-len(text) % 8)
    blob = bytearray(len(text).to_bytes(8, "little") + text + data)
    at = 8 + text.index(b'"sha256":"' + b"0" * 64) + len(b'"sha256":"')
    blob[at:at + 64] = hashlib.sha256(blob).hexdigest().encode()
    return bytes(blob)


def _repeat_tensor(text):
    entry = text[text.index('"layers.0.b":'):text.index(',"layers.1.W"') + 1]
    return text.replace(entry, entry + entry, 1)


REPEATS = {
    "tensor": _repeat_tensor,
    "metadata": lambda text: text.replace('"format":', '"format":"cbackprop-1","format":', 1),
    "config": lambda text: text.replace('\\"alpha\\": ', '\\"alpha\\": 0.5, \\"alpha\\": ', 1),
}


@pytest.mark.parametrize("where", list(REPEATS))
def test_repeated_json_keys_are_refused(saved, tmp_path, where):
    """json keeps the last of two equal keys: a file could name a tensor twice or
    say two things of one config entry. load refuses any repeat."""
    header, data = split(saved[1])
    with pytest.raises(ValueError, match=NOT_VALID + ".*repeated"):
        load_bytes(tmp_path, seal_edited(header, data, REPEATS[where]))


@pytest.fixture(scope="module")
def checkpoint_file(trained, tmp_path_factory):
    net, X, y = trained
    path = tmp_path_factory.mktemp("ckpt") / "run.safetensors"
    net = cb.Network.from_config(net.get_config())
    net.fit(X, y, optimizer=cb.Adam(), epochs=1, batch_size=16, checkpoint=path)
    return path.read_bytes()


def test_checkpoint_entries_are_the_only_unknown_keys_load_skips(checkpoint_file, tmp_path):
    """A checkpoint's "checkpoint.*" tensors and "checkpoint" metadata entry are
    skipped by load; any other key beside them is refused, checksum valid or not."""
    header, data = split(checkpoint_file)
    assert "checkpoint" in header["__metadata__"]
    assert any(name.startswith("checkpoint.") for name in header)
    assert load_bytes(tmp_path, reseal(header, data)).theta.size > 0
    evil = dict(header, **{"evil": {"dtype": "F32", "shape": [1],
                                    "data_offsets": [len(data), len(data) + 4]}})
    with pytest.raises(ValueError, match=NOT_VALID + ".*not a checkpoint entry"):
        load_bytes(tmp_path, reseal(evil, data + bytes(4)))
    meta = dict(header, __metadata__={**header["__metadata__"], "evil": "1"})
    with pytest.raises(ValueError, match=NOT_VALID + ".*unknown metadata"):
        load_bytes(tmp_path, reseal(meta, data))


def test_the_crafting_itself_is_sound(saved, tmp_path):
    """Resealing an unmodified header gives a file that loads: the crafted
    cases above fail for what they change, not for a broken checksum."""
    header, data = split(saved[1])
    assert reseal(header, data) == saved[1]
    assert isinstance(load_bytes(tmp_path, reseal(header, data)), cb.Network)


# ---- atomic writes ----------------------------------------------------------

@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_save_leaves_the_old_file_and_no_temporary(trained, tmp_path, monkeypatch,
                                                            error):
    net = trained[0]
    path = tmp_path / "model"
    net.save(path)
    before = path.read_bytes()
    other = cb.Network.from_config(net.get_config())

    def fail(fd):
        raise error
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(error)):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_save_replaces_an_existing_file_and_honours_the_umask(trained, tmp_path):
    path = tmp_path / "model"
    path.write_bytes(b"old contents")
    old_umask = os.umask(0o027)
    try:
        trained[0].save(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert isinstance(cb.load(path), cb.Network)
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_how_the_data_was_read_is_kept_and_checked(trained, tmp_path):
    """Network.data_options (the command line keeps its data options there) round-trips
    as a JSON object; a crafted entry that is not one is refused."""
    net = trained[0]
    net.data_options = {"label_column": "species", "delimiter": None, "header": True,
                        "columns": ["weight", "legs"], "label": "species"}
    path = tmp_path / "m.cbp"
    net.save(path)
    assert cb.load(path).data_options == net.data_options
    net.data_options = None
    net.save(path)
    assert cb.load(path).data_options is None
    header, data = split(path.read_bytes())
    for bad in ("[1, 2]", "{not json"):
        meta = dict(header, __metadata__={**header["__metadata__"], "data": bad})
        with pytest.raises(ValueError, match=NOT_VALID + ".*bad data entry"):
            load_bytes(tmp_path, reseal(meta, data))
