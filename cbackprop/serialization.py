"""save / load in the safetensors layout, with no pickle anywhere.

File = 8-byte little-endian header length N, N bytes of JSON header (padded
with spaces to a multiple of 8), then the raw tensors. The header maps
"layers.{i}.W" / "layers.{i}.b" to {dtype, shape, data_offsets}; its
"__metadata__" holds the format name, the network config (JSON), the state of
its shuffling stream and a SHA-256 of the whole file, taken with the 64 hex
digits of the checksum itself written as zeros. So any damaged byte, in the
header or the data, is caught. Any safetensors reader
(`safetensors.numpy.load_file`) can read the tensors.

read trusts nothing before the checksum matches, and nothing the header
claims about sizes: it reads at most the file, and builds a network only once
the tensors the config implies add up to exactly the data in the file.

A checkpoint (`fit(..., checkpoint=PATH)`) is the same file with more in it:
tensors named "checkpoint.{name}" after θ's (the optimizer's state, the row
order) and a "checkpoint" metadata entry (JSON: the optimizer, the epoch and
position, the History so far, the fit's options). The rule for keys: `load`
reads a checkpoint as the model it holds and ignores those entries; any other
tensor or metadata key it does not know is refused.

Everything a file says passes the checks that building the network and
setting θ apply: the config goes through the constructors' validation (and
must come back unchanged from `get_config`, so unknown config keys are
refused), θ must be finite, the random state a decimal integer in [0, 2⁶⁴),
and no JSON object (header, config, checkpoint entry) may repeat a key, so no
tensor is named twice, nor hold a NaN or Infinity token (the writer never
writes one). A checkpoint's own entries are checked by `cbackprop.checkpoint`
(`resume`), against the network built here.

What the checksum is for: accidental damage (a truncated copy, a flipped
bit). It is not a signature: anyone can write a file with a valid checksum.
`load` never executes anything from a file and bounds every size by the
file's own, so opening a file from someone else is safe; but its numbers are
only as good as its author.

This module works on (config, θ, random state, checkpoint entries) and never
imports `network`: `cbackprop.load` passes it `Network.from_config` to build with.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re

import numpy as np

_FORMAT = "cbackprop-1"
_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
#: Checkpoint tensors may also hold int64 (the row order).
_EXTRA_DTYPES = {**_DTYPES, "I64": np.dtype("<i8")}
_EXTRA_PREFIX = "checkpoint."
_METADATA = {"format", "config", "rng_state", "sha256", "checkpoint", "labels", "data"}
_MAX_HEADER = 1 << 24
_CHECKSUM_KEY = b'"sha256":"'
_UNSEALED = "0" * 64
# The config is stored as a JSON string inside the header, so its quotes are
# escaped: the unescaped key above occurs in the header exactly once.


def seal(header: dict, data: bytes) -> bytes:
    """The file's bytes: header (with the checksum filled in) and data."""
    header["__metadata__"]["sha256"] = _UNSEALED
    head = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    head += b" " * (-len(head) % 8)
    blob = bytearray(len(head).to_bytes(8, "little") + head + data)
    at = 8 + head.index(_CHECKSUM_KEY + _UNSEALED.encode()) + len(_CHECKSUM_KEY)
    blob[at:at + 64] = hashlib.sha256(blob).hexdigest().encode()
    return bytes(blob)


def _tensor_layout(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    """[(name, shape), …] the config implies, in file order (checked types only)."""
    sizes = [config["n_inputs"]] + [layer["units"] for layer in config["layers"]]
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"layer width {size!r}")
    layout = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layout += [(f"layers.{i}.W", (n_in, n_out)), (f"layers.{i}.b", (n_out,))]
    return layout


def write(path, config: dict, theta: np.ndarray, rng_state: int,
          checkpoint: dict | None = None, tensors: dict[str, np.ndarray] | None = None,
          labels: list | None = None, data: dict | None = None) -> None:
    """Write a network (its get_config(), θ and random-stream state) to path
    atomically: a temporary file in the same directory, flushed to disk, then
    renamed over path. Writing the same network twice gives identical bytes.
    labels, if given, are the class names (str or int) of the outputs; data, if
    given, is a JSON object saying how the training data was read (the command
    line keeps its --label-column, --delimiter, the header and column names).

    A checkpoint adds `checkpoint` (JSON-able) and named arrays `tensors`
    (float32, float64 or int64)."""
    config_json = json.dumps(config, sort_keys=True, allow_nan=False)
    code = "F32" if theta.dtype == np.float32 else "F64"
    raw = np.ascontiguousarray(theta, dtype=_DTYPES[code])
    header, offset = {}, 0
    for name, shape in _tensor_layout(config):
        nbytes = math.prod(shape) * raw.itemsize
        header[name] = {"dtype": code, "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": _FORMAT, "config": config_json,
                              "rng_state": str(rng_state)}
    if labels is not None:
        header["__metadata__"]["labels"] = json.dumps(list(labels))
    if data is not None:
        header["__metadata__"]["data"] = json.dumps(data, sort_keys=True, allow_nan=False)
    parts = [raw.tobytes()]
    for name, arr in (tensors or {}).items():
        code = next(c for c, dt in _EXTRA_DTYPES.items() if dt == arr.dtype.newbyteorder("<"))
        header[_EXTRA_PREFIX + name] = {"dtype": code, "shape": list(arr.shape),
                                        "data_offsets": [offset, offset + arr.nbytes]}
        parts.append(np.ascontiguousarray(arr, dtype=_EXTRA_DTYPES[code]).tobytes())
        offset += arr.nbytes
    if checkpoint is not None:
        header["__metadata__"]["checkpoint"] = json.dumps(checkpoint, sort_keys=True,
                                                          allow_nan=False)
    blob = seal(header, b"".join(parts))
    _write_atomically(os.fspath(path), blob)


def check_writable(path) -> None:
    """Raise now, before any work, if a file cannot be written at path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder: give a file name to write to")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: there is no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path}: the folder {folder} is not writable")


def _write_atomically(path: str, blob: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(6).hex()}.tmp")
        try:
            # Mode 0o666 lets the umask decide, as for any new file (mkstemp would give 0600).
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:   # make the rename itself durable (not possible on every platform)
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _corrupt(path, why: str) -> ValueError:
    return ValueError(f"{path} is not a valid cbackprop model file: {why}")


def _unique_keys(pairs: list) -> dict:
    """A JSON object's pairs as a dict; a repeated key is an error (json's default
    would keep the last, so two entries could claim one name)."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key!r} repeated")
        obj[key] = value
    return obj


def _no_constant(token: str):
    raise ValueError(f"{token} is not JSON (the writer never writes it)")


def _json(text):
    """Strict JSON: no repeated keys, no NaN or Infinity tokens."""
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def checkpoint_at(path) -> str | None:
    """A description of the run whose checkpoint lies at path ("epoch 3 of 6"), or
    None when path holds no checkpoint (no file, a model file, something else).
    Reads only the header, and trusts it only to say what the file claims to be."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > _MAX_HEADER:
                return None
            entry = _json(_json(f.read(n))["__metadata__"]["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    try:
        return f"epoch {int(entry['epoch'])} of {int(entry['epochs'])}"
    except (KeyError, TypeError, ValueError, OverflowError):
        return "a run"


def read(path, from_config, checkpoint: bool = False):
    """Read a network written by `write`, built by `from_config(config)` (a
    Network class's from_config), with its θ and random stream restored.

    With checkpoint=True, return (network, the checkpoint entry, {name: array}
    of the checkpoint's tensors); a file without a checkpoint is then an error.

    Raises
    ------
    ValueError
        For a truncated, damaged, foreign or crafted file. Nothing is
        unpickled, and nothing larger than the file is read or allocated.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise _corrupt(path, f"only {size} bytes")
        prefix = f.read(8)
        n = int.from_bytes(prefix, "little")
        if n > min(_MAX_HEADER, size - 8):
            raise _corrupt(path, f"header length {n} does not fit in a {size}-byte file")
        head = f.read(n)
        data = f.read(size - 8 - n)
    if len(head) != n or len(data) != size - 8 - n:
        raise _corrupt(path, "the file changed size while being read")
    try:
        header = _json(head)
        meta = header.pop("__metadata__")
        if meta.get("format") != _FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {_FORMAT!r}")
        checksum = meta["sha256"]
        if not (isinstance(checksum, str) and re.fullmatch("[0-9a-f]{64}", checksum)):
            raise ValueError("no checksum")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise _corrupt(path, f"unreadable header ({exc})") from None
    key = _CHECKSUM_KEY + checksum.encode()
    if head.count(key) != 1:
        raise _corrupt(path, "unreadable header (checksum entry)")
    at = head.index(key) + len(_CHECKSUM_KEY)
    digest = hashlib.sha256(prefix)
    for part in (head[:at], _UNSEALED.encode(), head[at + 64:], data):
        digest.update(part)
    if digest.hexdigest() != checksum:
        raise _corrupt(path, "checksum mismatch (the file is damaged or truncated)")

    # From here on the bytes are what save wrote; still check that they agree.
    try:
        config = _json(meta["config"])
        layout = _tensor_layout(config)
        rng_state = int(meta["rng_state"])
        if str(rng_state) != meta["rng_state"] or not 0 <= rng_state < 2**64:
            raise ValueError(f"rng_state {rng_state}")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise _corrupt(path, f"bad config ({exc})") from None
    code = {"float32": "F32", "float64": "F64"}.get(config.get("dtype"))
    if code is None:
        raise _corrupt(path, f"bad config (dtype {config.get('dtype')!r})")
    itemsize = _DTYPES[code].itemsize
    offset = 0
    for name, shape in layout:
        nbytes = math.prod(shape) * itemsize
        if header.get(name) != {"dtype": code, "shape": list(shape),
                                "data_offsets": [offset, offset + nbytes]}:
            raise _corrupt(path, f"tensor {name} does not match the config")
        offset += nbytes
    unknown = set(meta) - _METADATA
    if unknown:
        raise _corrupt(path, f"unknown metadata {sorted(unknown)}")
    extras = {}
    names = set(header) - {name for name, _ in layout}
    try:
        # Checkpoint tensors follow θ's, in the order of their offsets.
        names = sorted(names, key=lambda k: (header[k]["data_offsets"][0], k))
        for name in names:
            entry = header[name]
            if not name.startswith(_EXTRA_PREFIX):
                raise ValueError("not a checkpoint entry")
            dtype = _EXTRA_DTYPES[entry["dtype"]]
            shape = entry["shape"]
            if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 0
                       for m in shape):
                raise ValueError(f"shape {shape!r}")
            nbytes = math.prod(shape) * dtype.itemsize
            if set(entry) != {"dtype", "shape", "data_offsets"} or \
                    entry["data_offsets"] != [offset, offset + nbytes] or \
                    offset + nbytes > len(data):
                raise ValueError("offsets")
            extras[name[len(_EXTRA_PREFIX):]] = np.frombuffer(
                data, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
            offset += nbytes
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise _corrupt(path, f"tensor entries ({exc})") from None
    if offset != len(data):
        raise _corrupt(path, "the tensors do not match the config")
    try:
        net = from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise _corrupt(path, f"bad config ({exc})") from None
    if json.loads(json.dumps(net.get_config())) != config:
        raise _corrupt(path, "the config has entries this version does not know")
    try:
        # Through the setter, as any new θ: the same checks (finite values).
        net.theta = np.frombuffer(data, dtype=_DTYPES[code], count=net.theta.size)
    except ValueError as exc:
        raise _corrupt(path, f"bad parameters ({exc})") from None
    net.rng_state[0] = rng_state
    net.classes = _labels(path, meta, net.n_outputs)
    net.data_options = _data_options(path, meta)
    if not checkpoint:
        return net
    if "checkpoint" not in meta:
        raise ValueError(f"{path} is a model file, not a checkpoint (it has no training "
                         "state to resume: load it with cbackprop.load)")
    try:
        entry = _json(meta["checkpoint"])
        if not isinstance(entry, dict):
            raise TypeError("not an object")
    except (ValueError, TypeError, RecursionError) as exc:
        raise _corrupt(path, f"bad checkpoint entry ({exc})") from None
    return net, entry, {name: arr.copy() for name, arr in extras.items()}


def _labels(path, meta: dict, n_outputs: int) -> list | None:
    """The class names stored by write, checked: one str or int per output."""
    if "labels" not in meta:
        return None
    try:
        labels = json.loads(meta["labels"])
    except (TypeError, ValueError, RecursionError) as exc:
        raise _corrupt(path, f"bad labels ({exc})") from None
    if not (isinstance(labels, list) and len(labels) == n_outputs
            and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in labels)):
        raise _corrupt(path, f"bad labels: expected {n_outputs} class names")
    return labels


def _data_options(path, meta: dict) -> dict | None:
    """How the training data was read, as stored by write: a JSON object."""
    if "data" not in meta:
        return None
    try:
        data = _json(meta["data"])
    except (TypeError, ValueError, RecursionError) as exc:
        raise _corrupt(path, f"bad data entry ({exc})") from None
    if not isinstance(data, dict):
        raise _corrupt(path, "bad data entry: not a JSON object")
    return data
