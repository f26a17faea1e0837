"""save / load in the safetensors layout, with no pickle anywhere.

File = 8-byte little-endian header length N, N bytes of JSON header, raw data.
The header maps "layers.{i}.W" / "layers.{i}.b" to {dtype, shape,
data_offsets}; its "__metadata__" holds the network config (JSON) and a
SHA-256 of config + data, so any damage is caught. Any safetensors reader
(`safetensors.numpy.load_file`) can read the tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

_FORMAT = "cbackprop-1"
_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_MAX_HEADER = 1 << 24


def _checksum(config_json: str, data: bytes) -> str:
    return hashlib.sha256(config_json.encode() + data).hexdigest()


def save(network, path) -> None:
    """Write network to path atomically (temporary file, fsync, rename)."""
    config_json = json.dumps(network.get_config(), sort_keys=True)
    code = "F32" if network.dtype == np.float32 else "F64"
    header, chunks, offset = {}, [], 0
    for i, (W, b) in enumerate(network.params):
        for name, arr in (("W", W), ("b", b)):
            raw = np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()
            header[f"layers.{i}.{name}"] = {"dtype": code, "shape": list(arr.shape),
                                            "data_offsets": [offset, offset + len(raw)]}
            chunks.append(raw)
            offset += len(raw)
    data = b"".join(chunks)
    header["__metadata__"] = {"format": _FORMAT, "config": config_json,
                              "sha256": _checksum(config_json, data)}
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cbackprop-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(head).to_bytes(8, "little"))
            f.write(head)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _corrupt(path, why: str) -> ValueError:
    return ValueError(f"{path} is not a valid cbackprop model file: {why}")


def load(path):
    """Read a network written by `Network.save`.

    Raises ValueError for a truncated, damaged or foreign file; never unpickles.
    """
    from cbackprop.network import Network

    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise _corrupt(path, f"only {size} bytes")
        n = int.from_bytes(f.read(8), "little")
        if n > min(_MAX_HEADER, size - 8):
            raise _corrupt(path, f"header length {n} does not fit in a {size}-byte file")
        try:
            header = json.loads(f.read(n))
            meta = header.pop("__metadata__")
            if meta.get("format") != _FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            config_json = meta["config"]
            config = json.loads(config_json)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _corrupt(path, f"unreadable header ({exc})") from None
        data = f.read(size - 8 - n)
    if _checksum(config_json, data) != meta.get("sha256"):
        raise _corrupt(path, "checksum mismatch (the file is damaged or truncated)")
    try:
        net = Network.from_config(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise _corrupt(path, f"bad config ({exc})") from None
    code = "F32" if net.dtype == np.float32 else "F64"
    for i, (W, b) in enumerate(net.params):
        for name, arr in (("W", W), ("b", b)):
            entry = header.get(f"layers.{i}.{name}")
            if not isinstance(entry, dict):
                raise _corrupt(path, f"tensor layers.{i}.{name} is missing")
            start, end = entry.get("data_offsets", (None, None))
            if (entry.get("dtype") != code or entry.get("shape") != list(arr.shape)
                    or not isinstance(start, int) or end != start + arr.nbytes
                    or start < 0 or end > len(data)):
                raise _corrupt(path, f"tensor layers.{i}.{name} does not match the config")
            arr[...] = np.frombuffer(data, dtype=_DTYPES[code], count=arr.size,
                                     offset=start).reshape(arr.shape)
    if len(header) != 2 * len(net.layers):
        raise _corrupt(path, "unexpected tensors in the file")
    return net
