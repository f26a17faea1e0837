"""The one boundary: every array and hyper-parameter that reaches a kernel is
checked and converted here. Kernels trust what passes (no bounds checks), so
nothing else may hand them an array.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from cbackprop._core import _engine
from cbackprop._core._sparse import CSR
from cbackprop.streaming import Stream

#: BLAS takes dimensions as C ints: no layer may be wider than this.
MAX_WIDTH = 2**31 - 1

_REJECTED_KINDS = {
    "b": "bool",
    "c": "complex",
    "O": "object",
    "U": "str",
    "S": "bytes",
    "V": "structured/void",
    "M": "datetime64",
    "m": "timedelta64",
}


def as_numeric_array(value, name: str, allow_bool: bool = False) -> np.ndarray:
    """np.asarray(value) that accepts only real numbers."""
    if value is None:
        raise TypeError(f"{name} must be an array-like of real numbers, got None")
    if is_sparse(value):
        raise TypeError(f"{name} is a sparse matrix; pass a dense array ({name}.toarray())")
    if np.ma.is_masked(value):
        raise ValueError(f"{name} is a masked array with masked entries; fill them first "
                         f"({name}.filled(...)): their hidden values would be used")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be read as a rectangular array: {exc}") from None
    kind = arr.dtype.kind
    if kind == "b" and allow_bool:
        return arr
    if kind in _REJECTED_KINDS:
        raise TypeError(
            f"{name} has dtype {arr.dtype} ({_REJECTED_KINDS[kind]}); "
            "expected real numbers (integer or floating point)"
        )
    return arr


# ---- tables: pandas DataFrames, Arrow tables (and what pyarrow can read: polars) ----

def is_table(value) -> bool:
    """True for a pandas DataFrame, a pyarrow Table or RecordBatch, or another data frame
    that exports an Arrow stream (polars), without importing any of them."""
    kind = type(value)
    return (kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas")) or \
        (kind.__name__ in ("Table", "RecordBatch") and kind.__module__.startswith("pyarrow")) \
        or hasattr(value, "__arrow_c_stream__")


def _column_kind(dtype) -> str | None:
    """What a column's type holds when it is not a number (None for numbers)."""
    kind = getattr(dtype, "kind", None)
    if kind in ("i", "u", "f"):
        return None
    name = str(dtype).lower()
    if kind == "b" or name in ("bool", "boolean"):
        return None
    if any(name.startswith(t) for t in ("int", "uint", "float", "double", "halffloat")):
        return None
    if "categor" in name or "dictionary" in name:
        return "categories"
    if "str" in name or "utf8" in name or name == "object":
        return "text"
    return f"values of type {dtype}"


def table_columns(table, name: str = "X") -> tuple[list[str], list]:
    """(column names, columns as NumPy arrays of numbers) of a data frame or Arrow table;
    a column that holds text, categories or missing values is refused by name."""
    kind = type(table)
    if kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas"):
        names = [str(c) for c in table.columns]
        columns = []
        for label, column_name in zip(table.columns, names, strict=True):
            column = table[label]
            what = _column_kind(column.dtype)
            if what is None and column.isna().any():
                what = "missing values"
            if what is not None:
                raise _table_column_error(name, column_name, what)
            columns.append(column.to_numpy(dtype=np.float64 if column.dtype.kind not in "iuf"
                                           else None))
        return names, columns
    try:
        import pyarrow as pa
    except ImportError:
        raise ImportError(f"{name} is a {kind.__name__}, read through Arrow: pyarrow is not "
                          "installed (pip install 'cbackprop[arrow]')") from None
    if not isinstance(table, (pa.Table, pa.RecordBatch)):
        table = pa.table(table)
    names, columns = [str(n) for n in table.column_names], []
    for column_name, column in zip(names, table.columns, strict=True):
        what = _column_kind(column.type)
        if what is None and column.null_count:
            what = "missing values"
        if what is not None:
            raise _table_column_error(name, column_name, what)
        columns.append(column.to_numpy())
    return names, columns


def check_table_columns(table, name: str = "X") -> None:
    """Refuse, by name, a column of text or categories in a data frame or Arrow table
    (before scikit-learn's validation would say only "could not convert string to
    float"); reads the column types alone."""
    kind = type(table)
    if kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas"):
        pairs = zip(table.columns, table.dtypes, strict=True)
    elif hasattr(getattr(table, "schema", None), "types"):            # pyarrow
        pairs = zip(table.schema.names, table.schema.types, strict=True)
    elif hasattr(getattr(table, "schema", None), "items"):            # polars
        pairs = table.schema.items()
    else:
        return
    for column, dtype in pairs:
        what = _column_kind(dtype)
        if what is not None:
            raise _table_column_error(name, str(column), what)


def _table_column_error(name: str, column: str, what: str) -> ValueError | TypeError:
    if what == "missing values":
        return ValueError(f"{name} column {column!r} has missing values: fill them in or "
                          "drop those rows")
    advice = ("encode it as numbers (e.g. one-hot: pandas.get_dummies) or drop it; only "
              "the label column may hold text")
    return TypeError(f"{name} column {column!r} holds {what}, not numbers: {advice}")


def table_array(table, name: str = "X", dtype=np.float64) -> np.ndarray:
    """A data frame or Arrow table as a 2-D C-contiguous array (see `table_columns`)."""
    names, columns = table_columns(table, name)
    n = len(columns[0]) if columns else 0
    out = np.empty((n, len(columns)), dtype=dtype)
    for j, column in enumerate(columns):
        out[:, j] = column
    return out


def is_sparse(value) -> bool:
    """True for a scipy.sparse matrix or array (of any format), without importing scipy."""
    return hasattr(value, "toarray") and hasattr(value, "nnz")


def _c_array(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """arr itself when it is already C-contiguous, aligned, native dtype; else a copy.
    A value too large for float32 becomes inf, which the caller's finiteness check reports."""
    with np.errstate(over="ignore"):
        return np.require(arr, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"])


def check_dtype(dtype) -> np.dtype:
    """The network's dtype: float32 or float64."""
    if dtype is None:   # np.dtype(None) would quietly mean float64
        raise TypeError("dtype must be 'float32' or 'float64', got None")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dt}")
    return dt


def all_finite(arr: np.ndarray) -> bool:
    """No NaN or inf in a C-contiguous float32/float64 array, without a temporary."""
    return bool(_engine.all_finite(arr.reshape(-1)))


def check_X(X, n_features: int, dtype: np.dtype, name: str = "X") -> np.ndarray | CSR:
    """Return X as a C-contiguous (n, n_features) array of dtype, finite, n ≥ 1;
    a scipy.sparse X as a `CSR` instead (`check_sparse_X`).

    The caller's array is never modified: conversion copies when needed.
    """
    if isinstance(X, Stream):
        raise TypeError(f"{name} is a stream ({X!r}): Network.fit reads one a buffer at a "
                        "time; everything else takes arrays (load the file whole, e.g. "
                        "cb.datasets.load_parquet, or a part of it)")
    if is_sparse(X):
        return check_sparse_X(X, n_features, dtype, name)
    if is_table(X):
        X = table_array(X, name, dtype)
    arr = as_numeric_array(X, name)
    if arr.ndim != 2:
        hint = " (use X.reshape(1, -1) for a single sample)" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; at least 1 sample is required")
    if arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features per row, but the network expects {n_features}"
        )
    out = _c_array(arr, dtype)
    if isinstance(X, np.memmap) and not np.shares_memory(out, arr):
        warnings.warn(f"{name} is a memory-mapped {arr.dtype} file, copied whole into memory "
                      f"as {out.dtype} ({out.nbytes / 1e6:.0f} MB): save it as {out.dtype} "
                      "(C order) to train on it in place", stacklevel=3)
    if not all_finite(out):
        raise ValueError(
            f"{name} contains NaN or infinity"
            + (" (or values too large for float32)" if dtype == np.float32 else "")
        )
    return out


def _check_compressed(X, n_major: int, n_minor: int, name: str) -> None:
    """The index arrays of a CSR (CSC) matrix describe n_major rows (columns) with
    indices in 0..n_minor−1: the kernels read by them without bounds checks."""
    indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
    if (indptr.ndim != 1 or indptr.shape[0] != n_major + 1 or indptr[0] != 0
            or indptr[-1] != indices.shape[0] or indices.shape != np.shape(X.data)
            or np.any(indptr[1:] < indptr[:-1])):
        raise ValueError(f"{name} is a damaged sparse matrix: its indptr, indices and data "
                         "do not agree")
    if indices.size and (indices.min() < 0 or indices.max() >= n_minor):
        raise ValueError(f"{name} is a damaged sparse matrix: an index lies outside its "
                         f"shape {X.shape}")


def check_sparse_X(X, n_features: int, dtype: np.dtype, name: str = "X") -> CSR:
    """Return a scipy.sparse X (CSR, CSC or another format: converted to CSR once)
    as a `CSR` of dtype with int32 indices and intp row pointers, summed
    duplicates and sorted indices, finite values, n ≥ 1 rows. Memory stays
    proportional to the non-zeros; X itself is never modified."""
    shape = tuple(X.shape)
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {shape}")
    kind = np.dtype(X.dtype).kind
    if kind in _REJECTED_KINDS:
        raise TypeError(f"{name} has dtype {X.dtype} ({_REJECTED_KINDS[kind]}); "
                        "expected real numbers (integer or floating point)")
    if shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; at least 1 sample is required")
    if shape[1] != n_features:
        raise ValueError(
            f"{name} has {shape[1]} features per row, but the network expects {n_features}")
    fmt = X.format
    if fmt == "csr":
        _check_compressed(X, shape[0], shape[1], name)
    elif fmt == "csc":
        _check_compressed(X, shape[1], shape[0], name)
    X = X.tocsr()
    if fmt not in ("csr", "csc"):
        _check_compressed(X, shape[0], shape[1], name)
    if not X.has_canonical_format:
        X = X.copy()          # never the caller's
        X.sum_duplicates()    # and sorts the indices
    data = _c_array(X.data, dtype)
    if not all_finite(data):
        raise ValueError(
            f"{name} contains NaN or infinity"
            + (" (or values too large for float32)" if dtype == np.float32 else ""))
    return CSR(data, np.require(X.indices, np.int32, ["C_CONTIGUOUS", "ALIGNED"]),
               np.require(X.indptr, np.intp, ["C_CONTIGUOUS", "ALIGNED"]), shape[1])


def take_rows(X: np.ndarray | CSR, rows: np.ndarray) -> np.ndarray | CSR:
    """X[rows] for a checked X (an array or a `CSR`), rows an integer array."""
    if not isinstance(X, CSR):
        return X[rows]
    starts = X.indptr[rows]
    counts = X.indptr[rows + 1] - starts
    indptr = np.zeros(rows.shape[0] + 1, dtype=np.intp)
    np.cumsum(counts, out=indptr[1:])
    # Position of each kept non-zero in X: its row's start plus its place in the row.
    at = np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1], dtype=np.intp)
    return CSR(X.data[at], X.indices[at], indptr, X.shape[1])


def check_targets(y, n_rows: int, loss: str, n_outputs: int, dtype: np.dtype,
                  name: str = "y") -> np.ndarray:
    """Return targets as a C-contiguous (n_rows, n_outputs) array of dtype.

    cross_entropy: integer class indices in 0..k-1 (or exactly integral floats),
    or rows of class probabilities (one-hot). binary_cross_entropy: values in
    [0, 1]. mse / huber: any finite values. Shape (n,) is accepted for labels
    and for single-output networks.
    """
    arr = as_numeric_array(y, name, allow_bool=loss == "binary_cross_entropy")
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows but X has {n_rows}")
    if loss == "cross_entropy" and arr.ndim == 1:
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains NaN or infinity")
            if np.any(arr != np.round(arr)):
                raise ValueError(f"{name}: class labels must be integers, got non-integral values")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_outputs:
            raise ValueError(
                f"{name}: class labels must be in 0..{n_outputs - 1} for {n_outputs} outputs, "
                f"got values in [{lo}, {hi}]"
            )
        Y = np.zeros((n_rows, n_outputs), dtype=dtype)
        Y[np.arange(n_rows), arr.astype(np.intp)] = 1
        return Y
    if arr.ndim == 1:
        if n_outputs != 1:
            raise ValueError(
                f"{name} has shape {arr.shape}, but the network has {n_outputs} outputs: "
                f"expected shape ({n_rows}, {n_outputs})"
            )
        arr = arr.reshape(n_rows, 1)
    if arr.shape[1] != n_outputs:
        raise ValueError(
            f"{name} has {arr.shape[1]} columns, but the network has {n_outputs} outputs"
        )
    Y = _c_array(arr, dtype)
    if not all_finite(Y):
        raise ValueError(f"{name} contains NaN or infinity")
    if loss in ("cross_entropy", "binary_cross_entropy") and (Y.min() < 0 or Y.max() > 1):
        raise ValueError(f"{name}: targets for {loss} must lie in [0, 1]")
    if loss == "poisson" and Y.min() < 0:
        raise ValueError(f"{name}: targets for the poisson loss are counts or rates, >= 0; "
                         f"got {Y.min()}")
    if loss == "cross_entropy" and not np.allclose(Y.sum(axis=1), 1, atol=1e-4):
        raise ValueError(
            f"{name}: each row of 2-D cross_entropy targets must be one-hot "
            "(or class probabilities summing to 1)"
        )
    return Y


def _finite_vector(value, name: str, size: int, dtype: np.dtype) -> np.ndarray:
    """A real, finite vector of shape (size,), as a C-contiguous array of dtype."""
    arr = as_numeric_array(value, name)
    if arr.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {arr.shape}")
    out = _c_array(arr, dtype)
    if not all_finite(out):
        raise ValueError(f"{name} contains NaN or infinity")
    return out


def check_sample_weight(w, n_rows: int, dtype: np.dtype) -> np.ndarray:
    """Return per-row weights (n_rows,) of dtype, finite, ≥ 0, not all 0;
    an empty array when w is None (meaning: all ones)."""
    if w is None:
        return np.empty(0, dtype=dtype)
    out = _finite_vector(w, "sample_weight", n_rows, dtype)
    if out.min() < 0:
        raise ValueError("sample_weight must be non-negative")
    if out.sum() <= 0:
        raise ValueError("sample_weight must have a positive sum")
    return out


def check_theta(value, size: int, dtype: np.dtype) -> np.ndarray:
    """New parameters for a network: shape (size,), real, finite, as dtype."""
    return _finite_vector(value, "theta", size, dtype)


def check_widths(widths) -> None:
    """Layer widths (inputs first) that BLAS can take."""
    for width in widths:
        if width > MAX_WIDTH:
            raise ValueError(f"layer width {width} exceeds {MAX_WIDTH} (2**31 - 1), "
                             "the largest dimension BLAS accepts")


def check_bool(value, name: str) -> bool:
    """True or False (NumPy's bool too), nothing else."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_int(value, name: str, minimum: int) -> int:
    """An integer ≥ minimum (bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(value, name: str, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in the given interval."""
    # (a float skips the slow abstract-class check: fit checks its optimizer's
    # hyper-parameters every epoch)
    if type(value) is not float and (isinstance(value, bool)
                                     or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else (f"< {high}" if high_open else f"<= {high}")
        rule = " and ".join(r for r in (lo, hi) if r) or "finite"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return v


def check_name(value, name: str, choices: tuple[str, ...]) -> str:
    """One of the allowed names."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {', '.join(choices)}; got {value!r}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")
    return value


def check_json_object(value, name: str) -> dict | None:
    """None, or a dict with str keys that JSON writes and reads back unchanged
    (str, finite float, int, bool, None, and lists and dicts of them)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict (or None), got {type(value).__name__}")

    def check(item, where):
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise TypeError(f"{where} has the key {key!r}: keys must be strings")
                check(inner, f"{where}[{key!r}]")
        elif isinstance(item, list):
            for i, inner in enumerate(item):
                check(inner, f"{where}[{i}]")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where} is {item!r}: JSON has no NaN or infinity")
        elif not (item is None or isinstance(item, (str, bool, int, float))):
            raise TypeError(f"{where} is a {type(item).__name__}: only str, int, float, "
                            "bool, None, lists and dicts are kept")

    check(value, name)
    return value
