"""Data sets: the embedded UCI digits, readers for MNIST (IDX), CSV and .npz
files, synthetic problems (spirals, XOR, regression) and a seeded split.

Loaders return plain NumPy arrays (X as float, y as int64 class indices or
float targets) that `Network.fit` takes as they are.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import math
import mmap
import os
import zipfile
import zlib
from importlib import resources

import numpy as np

from cbackprop import _validation as V
from cbackprop.streaming import Stream

__all__ = [
    "load_digits", "load_mnist", "read_idx", "load_csv", "csv_columns", "load_npz",
    "load_parquet", "load_arrow", "from_table", "table_column_names", "ParquetStream",
    "make_spirals", "make_xor", "make_regression", "train_test_split",
]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI optical recognition of handwritten digits data set.

    1797 images of 8×8 pixels with values 0..16 and their labels 0..9 (the
    set scikit-learn's `load_digits` returns), shipped inside the package.

    Returns
    -------
    X : ndarray of float64, shape (1797, 64)
    y : ndarray of int64, shape (1797,)
    """
    with resources.files("cbackprop").joinpath("data/digits.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as data:
            return data["X"].astype(np.float64), data["y"].astype(np.int64)


def train_test_split(X, y, test_size: float = 0.25, seed: int = 0):
    """Shuffle the rows with `seed` and split them: (X_train, X_test, y_train, y_test)."""
    X, y = np.asarray(X), np.asarray(y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    test_size = V.check_real(test_size, "test_size", 0, 1, low_open=True, high_open=True)
    order = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = max(1, int(round(test_size * X.shape[0])))
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


# ---- IDX (MNIST) ------------------------------------------------------------

# IDX element types: the third byte of the magic number.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
# Far above MNIST's 47 MB; a bound so a damaged size field cannot ask for terabytes.
_IDX_MAX_BYTES = 1 << 32


def _open_maybe_gzip(path: str):
    """Open a file for reading bytes, through gzip when it starts with gzip's magic."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or raw.

    The format: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B
    int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of
    dimensions, each dimension as a big-endian uint32, then the data,
    big-endian, row-major.

    Parameters
    ----------
    path : str or os.PathLike
        The file; compressed files are recognised by gzip's magic bytes,
        whatever their name.

    Returns
    -------
    ndarray
        The array with the file's shape, in native byte order.

    Raises
    ------
    ValueError
        If the magic number is wrong, or the data is shorter or longer than
        the dimensions say, or the gzip stream is damaged.
    """
    path = os.fspath(path)
    try:
        with _open_maybe_gzip(path) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_TYPES:
                raise ValueError(f"{path} is not an IDX file (magic bytes {magic.hex() or 'none'})")
            ndim = magic[3]
            if ndim == 0:
                raise ValueError(f"{path}: IDX file with 0 dimensions")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise ValueError(f"{path} is truncated: its header ends early")
            shape = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
            dtype = np.dtype(_IDX_TYPES[magic[2]])
            expected = math.prod(shape) * dtype.itemsize      # Python ints: no overflow
            if expected > _IDX_MAX_BYTES:
                raise ValueError(f"{path}: dimensions {shape} are implausibly large")
            data = f.read(expected + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is a damaged gzip file: {exc}") from None
    if len(data) != expected:
        what = "is truncated" if len(data) < expected else "has data after the end"
        raise ValueError(f"{path} {what}: dimensions {shape} need {expected} bytes of data")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


# Accepted spellings of the four MNIST file names (the original, and with a dot).
_MNIST_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _mnist_file(directory: str, split: str, kind: str) -> str:
    names = _MNIST_FILES[(split, kind)]
    for name in names:
        for candidate in (name, name + ".gz"):
            full = os.path.join(directory, candidate)
            if os.path.isfile(full):
                return full
    raise FileNotFoundError(
        f"{directory} has no MNIST {split} {kind} file (expected {names[0]} or {names[0]}.gz)"
    )


def _mnist_split(directory: str, split: str, scale: bool) -> tuple[np.ndarray, np.ndarray]:
    images_path = _mnist_file(directory, split, "images")
    labels_path = _mnist_file(directory, split, "labels")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected images (n, rows, cols), got shape "
                         f"{images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected labels (n,), got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} has {images.shape[0]} images but {labels_path} has "
                         f"{labels.shape[0]} labels")
    X = images.reshape(images.shape[0], -1).astype(np.float32)
    if scale:
        X /= 255.0
    return X, labels.astype(np.int64)


def _mnist_directory(path) -> str:
    directory = os.fspath(path)
    if os.path.isfile(directory):
        raise NotADirectoryError(f"{directory} is a file; MNIST is read from the directory "
                                 "holding its IDX files")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"MNIST directory {directory} does not exist")
    return directory


def load_mnist(path, scale: bool = True):
    """MNIST (or Fashion-MNIST) from a directory of the four IDX files.

    The files are `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each raw or
    gzip-compressed (`.gz`); the spelling `train-images.idx3-ubyte` is
    accepted too. Nothing is downloaded.

    Parameters
    ----------
    path : str or os.PathLike
        The directory.
    scale : bool, default True
        Divide the pixel values (0..255) by 255.

    Returns
    -------
    X_train : ndarray of float32, shape (60000, 784)
    X_test : ndarray of float32, shape (10000, 784)
    y_train : ndarray of int64, shape (60000,)
    y_test : ndarray of int64, shape (10000,)
        In the order `train_test_split` returns. The image rows are flattened
        row by row; the counts are those of the files.

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If a file is damaged (see `read_idx`) or images and labels disagree.
    """
    directory = _mnist_directory(path)
    X_train, y_train = _mnist_split(directory, "train", scale)
    X_test, y_test = _mnist_split(directory, "test", scale)
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"training images have {X_train.shape[1]} pixels but test images "
                         f"have {X_test.shape[1]}")
    return X_train, X_test, y_train, y_test


# ---- CSV and .npz -----------------------------------------------------------

def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _records(path: str, delimiter: str):
    """(line number, stripped fields) for each record that is not blank; quoted fields
    may hold the delimiter and line breaks. A name ending in .gz is decompressed; a UTF-8
    byte order mark (as Excel writes) is dropped."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    line = 0
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for fields in reader:
                line = reader.line_num
                if any(field.strip() for field in fields):
                    yield line, [field.strip() for field in fields]
    except csv.Error as exc:
        raise ValueError(f"{path}, line {line + 1}: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is a damaged gzip file: {exc}") from None


def _has_header(first: list[str], second: list[str] | None) -> bool:
    """The first row names the columns when one of its fields is text above a number
    (so a text label column alone does not make a header)."""
    if second is None or len(second) != len(first):
        return not all(_is_number(field) for field in first)
    return any(not _is_number(a) and _is_number(b) for a, b in zip(first, second, strict=True))


def _not_a_number(path, line, column: str, field: str) -> ValueError:
    if _is_number(field):
        found = f"found {field!r}, not a finite number"
        advice = "fill in the missing value or drop the row"
    elif field:
        found = f"found {field!r} where a number belongs"
        advice = ("encode it as a number, or drop the column; only the label column may "
                  "hold text")
    else:
        found = "found an empty cell"
        advice = "fill it in or drop the row"
    return ValueError(f"{path}, line {line}, {column}: {found}; {advice}")


def csv_columns(path, delimiter: str = ",", header: bool | None = None
                ) -> tuple[list[str] | None, int]:
    """(column names, or None for a file without a header row; the number of columns)
    of a CSV file, from its first two records (see `load_csv` for the header guess)."""
    path = os.fspath(path)
    records = _records(path, delimiter)
    first = next(records, None)
    if first is None:
        raise ValueError(f"{path} is empty")
    second = next(records, None)
    records.close()
    if header is None:
        header = _has_header(first[1], None if second is None else second[1])
    return (first[1] if header else None), len(first[1])


def load_csv(path, label_column: int | str | None = -1, header: bool | None = None,
             delimiter: str = ",", id_column: int | str | None = None):
    """A table from a CSV file (optionally .gz), split into X and y.

    Fields may be quoted (and then hold the delimiter); blank lines are
    skipped. The features must be numbers; the labels may be numbers or text
    (class names such as "cat", "dog").

    Parameters
    ----------
    path : str or os.PathLike
        The file; a name ending in ``.gz`` is read through gzip.
    label_column : int, str or None, default -1
        The column holding the targets: an index (negative counts from the
        end, -1 is the last column) or a name from the header row. None:
        every column is a feature and y is None.
    header : bool, optional
        Whether the first row holds column names. Default: yes when a field
        of the first row is text where the second row has a number.
    delimiter : str, default ","
        One character.
    id_column : int or str, optional
        A column that names the rows (any text), set apart from the features
        as the label column is; given, the ids are returned third.

    Returns
    -------
    X : ndarray of float64, shape (n, columns - 1)
    y : ndarray, shape (n,), or None
        int64 when every target is a whole number (class indices), float64
        for other numbers, str when any target is text; None when
        label_column is None.
    ids : list of str, only when id_column is given

    Raises
    ------
    ValueError
        If the file is empty, a feature is not a number or a cell is empty,
        rows differ in length, or the label column does not exist. The
        message gives the file's line number and the column.
    """
    path = os.fspath(path)
    if not (isinstance(delimiter, str) and len(delimiter) == 1):
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    records = _records(path, delimiter)
    first = next(records, None)
    if first is None:
        raise ValueError(f"{path} is empty")
    second = next(records, None)
    if header is None:
        header = _has_header(first[1], None if second is None else second[1])
    names = first[1] if header else None
    rows = ([] if header else [first]) + ([] if second is None else [second])
    n_columns = len(first[1])
    if n_columns == 1 and label_column is not None:
        guess = next((c for c in ",;\t|" if c != delimiter and c in first[1][0]), None)
        if guess is not None:
            raise ValueError(
                f"{path}, line {first[0]}: one column only, but the line holds {guess!r}; "
                f"are the fields separated by {guess!r}? Pass delimiter={guess!r} "
                f"(on the command line: --delimiter {guess!r})")
    index = id_index = None
    if label_column is not None:
        index = label_index(path, label_column, names, n_columns)
    if id_column is not None:
        id_index = label_index(path, id_column, names, n_columns, "id_column")
        if id_index == index:
            raise ValueError(f"{path}: the id column is the label column "
                             f"({_column(names, index)})")
    apart = sorted((c for c in (index, id_index) if c is not None), reverse=True)
    features = [c for c in range(n_columns) if c not in apart]   # the columns X keeps
    tail = () if id_column is None else ([],)
    fast = None if first[0] != 1 or n_columns < 2 else _arrow_csv(
        path, delimiter, header, n_columns, features, index, id_index)
    if fast is not None:
        records.close()
        X, labels, ids = fast
        tail = () if id_column is None else (ids,)
        if index is None:
            return (X, None, *tail)
        y = _targets(labels)
        if y is not None:
            return (X, y, *tail)
        # A label that is not a finite number among numbers: read again below, for the
        # message that names its line.
        records = _records(path, delimiter)
        next(records), next(records, None)
    X, labels, lines, ids = [], [], [], []
    for line, fields in itertools.chain(rows, records):
        if len(fields) != n_columns:
            raise ValueError(
                f"{path}, line {line}: {len(fields)} fields, but line {first[0]} has "
                f"{n_columns}; is a delimiter missing or extra (quote fields that contain "
                f"{delimiter!r})?")
        if index is not None:
            label = fields[index]
            if not label:
                raise _not_a_number(path, line, _column(names, index), label)
            labels.append(label)
        if id_index is not None:
            ids.append(fields[id_index])
        for c in apart:
            del fields[c]
        try:
            row = np.array(fields, dtype=np.float64)
        except ValueError:
            row = None
        if row is None or not np.all(np.isfinite(row)):
            j = next(j for j, field in enumerate(fields)
                     if not (_is_number(field) and math.isfinite(float(field))))
            raise _not_a_number(path, line, _column(names, features[j]), fields[j])
        X.append(row)
        lines.append(line)
    if not X:
        raise ValueError(f"{path} has a header but no data rows")
    X = np.vstack(X) if X[0].size else np.empty((len(X), 0))
    tail = (ids,) if id_column is not None else ()
    if index is None:
        return (X, None, *tail)
    y = _targets(labels)
    if y is None:
        bad = next(i for i, label in enumerate(labels) if not math.isfinite(float(label)))
        raise _not_a_number(path, lines[bad], _column(names, index), labels[bad])
    return (X, y, *tail)


def _targets(labels: list[str]) -> np.ndarray | None:
    """The label column's cells as y: int64 when every one is a whole number, float64
    for other numbers, str when any is text; None when a number is not finite."""
    if not all(_is_number(label) for label in labels):
        return np.array(labels, dtype=str)
    y = np.array(labels, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        return None
    return y.astype(np.int64) if np.all(y == np.round(y)) else y


def _has_quote(f) -> bool:
    """Whether the open file holds a double quote anywhere (read through a memory map)."""
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
        return view.find(b'"') != -1


def _arrow_csv(path: str, delimiter: str, header: bool, n_columns: int, features: list[int],
               index: int | None, id_index: int | None):
    """(X, labels, ids) read by pyarrow's CSV reader (the `[arrow]` extra), or None when
    pyarrow is not installed or the file holds anything the reader below would refuse or
    read otherwise (an empty or non-finite cell, a ragged row, text among the features,
    a byte order mark, blank lines at the top): that reader then reads it and gives its
    message. The cells are parsed to the same float64 values (both round correctly)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pa_csv
    except ImportError:
        return None
    names = [f"c{j}" for j in range(n_columns)]
    types = {names[j]: pa.float64() for j in features}
    for j in (index, id_index):
        if j is not None:
            types[names[j]] = pa.string()
    gzipped = path.lower().endswith(".gz")
    try:
        with open(path, "rb") as f:
            if f.read(3) == b"\xef\xbb\xbf":
                return None
            # Without a quote no value can hold a line break, and the reader splits the
            # file at any line break to parse its blocks in parallel (about 1.5x faster).
            quoted = gzipped or os.fstat(f.fileno()).st_size == 0 or _has_quote(f)
        source = pa.input_stream(path, compression="gzip" if gzipped else None)
        table = pa_csv.read_csv(
            source,
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=int(header)),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=quoted),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False,
                quoted_strings_can_be_null=False))
        if table.num_rows == 0:
            return None
        X = np.empty((table.num_rows, len(features)))
        for k, j in enumerate(features):
            X[:, k] = table.column(j).to_numpy()
        if not np.all(np.isfinite(X)):
            return None
        cells = [None, None]
        for k, j in enumerate((index, id_index)):
            if j is not None:
                cells[k] = pc.utf8_trim_whitespace(table.column(j)).to_pylist()
        if cells[0] is not None and not all(cells[0]):
            return None
    except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError):
        return None
    return X, cells[0], cells[1]


def _column(names: list[str] | None, j: int) -> str:
    """How a message names column j (counted from 0)."""
    return f"column {j + 1}" + (f" ({names[j]!r})" if names else "")


def label_index(path: str, label_column, names: list[str] | None, n_columns: int,
                what: str = "label_column") -> int:
    """The index of the column `label_column` names (a name, or a position, -1 the last)
    among n_columns (named `names`, or None without a header) of the file at path."""
    if isinstance(label_column, str):
        if names is None:
            raise ValueError(f"{what} {label_column!r} is a column name, but {path} has no "
                             "header row")
        if label_column not in names:
            raise ValueError(f"{path} has no column {label_column!r}; its columns are "
                             f"{', '.join(names)}")
        index = names.index(label_column)
    else:
        index = V.check_int(label_column, what, -n_columns)
        if index >= n_columns:
            raise ValueError(f"{what} {label_column} is out of range: {path} has {n_columns} "
                             f"columns (0..{n_columns - 1}, or -1 for the last)")
        index %= n_columns
    if n_columns < 2:
        raise ValueError(f"{path} has a single column: no features beside the labels")
    return index


def load_npz(path) -> tuple[np.ndarray, np.ndarray | None]:
    """X and y from a NumPy .npz file holding arrays named "X" and (optionally) "y".

    Never unpickles (object arrays are refused).

    Returns
    -------
    X : ndarray, 2-D
    y : ndarray or None (when the file has no "y")
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist")
        raise ValueError(f"{path} is not a .npz file (a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            X = data["X"] if "X" in files else None
            y = data["y"] if "y" in files else None
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable .npz file: {exc}") from None
    if X is None:
        raise ValueError(f"{path} has no array named 'X' (it has: {', '.join(files) or 'nothing'})")
    if X.ndim != 2:
        raise ValueError(f"{path}: X must be 2-D (n_samples, n_features), got shape {X.shape}")
    return X, y


# ---- tables: data frames, Arrow tables, Parquet and Arrow files ----------------

def from_table(table, label_column: int | str | None = -1):
    """X and y from a pandas DataFrame, a pyarrow Table or another data frame that
    exports Arrow (polars).

    Parameters
    ----------
    table : DataFrame or Table
    label_column : int, str or None, default -1
        The column holding the targets, by name or position (-1: the last);
        None: every column is a feature and y is None.

    Returns
    -------
    X : ndarray of float64, shape (n, columns - 1)
    y : ndarray or None
        As `load_csv` gives it: int64 for whole numbers, float64 for other
        numbers, str for text or categories.

    Raises
    ------
    TypeError
        For a feature column of text or categories (named in the message).
    ValueError
        For missing values, or a label column that does not exist.
    """
    return _split_table(table, label_column, "table")


def _split_table(table, label_column, source: str):
    if not V.is_table(table):
        raise TypeError(f"expected a pandas DataFrame or an Arrow table, got "
                        f"{type(table).__name__}")
    arrow = not (type(table).__name__ == "DataFrame"
                 and type(table).__module__.startswith("pandas"))
    if arrow:
        import pyarrow as pa

        if not isinstance(table, (pa.Table, pa.RecordBatch)):
            table = pa.table(table)
        names = [str(n) for n in table.column_names]
    else:
        names = [str(c) for c in table.columns]
    if label_column is None:
        return V.table_array(table, source), None
    index = label_index(source, label_column, names, len(names))
    if arrow:
        labels = table.column(index)
        features = table.drop_columns([table.column_names[index]]) if hasattr(
            table, "drop_columns") else table.select(
            [j for j in range(len(names)) if j != index])
        if labels.null_count:
            raise ValueError(f"{source}: the label column {names[index]!r} has missing values")
        values = labels.to_pylist()
    else:
        column = table.columns[index]
        labels = table[column]
        features = table.drop(columns=[column])
        if labels.isna().any():
            raise ValueError(f"{source}: the label column {names[index]!r} has missing values")
        values = labels.tolist()
    X = V.table_array(features, source)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
           for v in values):
        y = np.array(values, dtype=np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{source}: the label column {names[index]!r} holds NaN or "
                             "infinity")
        return X, (y.astype(np.int64) if np.all(y == np.round(y)) else y)
    return X, np.array([str(v) for v in values], dtype=str)


def _pyarrow(what: str):
    try:
        import pyarrow
    except ImportError:
        raise ImportError(f"{what} needs pyarrow, which is not installed: "
                          "pip install 'cbackprop[arrow]'") from None
    return pyarrow


def _read_columnar(path, label_column, kind: str):
    """X and y from a Parquet ("Parquet") or Arrow IPC ("Arrow") file."""
    path = os.fspath(path)
    _pyarrow(f"reading {kind} files")
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        table = (pq.read_table if kind == "Parquet" else feather.read_table)(path)
    except Exception as exc:      # pyarrow's errors have no common base outside pyarrow
        raise ValueError(f"{path} is not a readable {kind} file: {exc}") from None
    return _split_table(table, label_column, path)


def load_parquet(path, label_column: int | str | None = -1):
    """X and y from a Parquet file (pyarrow: the `[arrow]` extra).

    Parameters and results as `from_table`; feature columns must be numbers.
    """
    return _read_columnar(path, label_column, "Parquet")


def load_arrow(path, label_column: int | str | None = -1):
    """X and y from an Arrow IPC (Feather v2) file; as `load_parquet`."""
    return _read_columnar(path, label_column, "Arrow")


def table_column_names(path) -> list[str]:
    """The column names of a Parquet or Arrow file, from its schema alone."""
    path = os.fspath(path)
    _pyarrow("reading Parquet and Arrow files")
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    try:
        if path.lower().endswith(".parquet"):
            return list(pq.read_schema(path).names)
        return list(feather.read_table(path, memory_map=True).schema.names)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except Exception as exc:      # pyarrow's errors have no common base outside pyarrow
        raise ValueError(f"{path} is not a readable Parquet/Arrow file: {exc}") from None


class ParquetStream(Stream):
    """A Parquet file that `Network.fit` reads row group by row group, never whole:
    for data larger than memory (pyarrow: the `[arrow]` extra).

    Pass it as X, with y=None: the labels are its label column. The fit holds one
    buffer of `buffer_rows` rows in memory; each epoch takes the row groups in a
    fresh random order and the rows of each buffer in a random order (see
    `cbackprop.streaming` for the exact order; shuffle=False: the file's order).

    Parameters
    ----------
    path : str or path
    label_column : int or str, default -1
        The label column, by name or position (-1: the last).
    classes : list, optional
        The class labels (text or integers): each label is given as its index in
        this list (what a softmax network trains on); a label not in it is an
        error. Default: for a label column of text, its distinct labels, sorted
        (`label_values()`, which reads the label column alone); for one of numbers,
        the labels as they are (class indices 0..k-1, or targets).
    buffer_rows : int, default 65536
        Rows held in memory at once (rounded down to whole batches): the span of
        the shuffle.

    Notes
    -----
    Feature columns must be numbers (a text or categorical one is refused by
    name, before anything is read); a missing value is reported by column and
    row group when its part is read. Not taken by `fit_many`, the estimators
    or `checkpoint=` (their data stay in memory).
    """

    #: Rows per block read from a row group (memory: one block beside the buffer).
    block_rows = 8192

    def __init__(self, path, label_column: int | str = -1, classes=None,
                 buffer_rows: int = 65536):
        self.path = os.fspath(path)
        _pyarrow("reading Parquet files")
        import pyarrow.parquet as pq

        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path} does not exist")
        try:
            self._file = pq.ParquetFile(self.path)
        except Exception as exc:      # pyarrow's errors have no common base outside pyarrow
            raise ValueError(f"{self.path} is not a readable Parquet file: {exc}") from None
        schema = self._file.schema_arrow
        self.names = [str(n) for n in schema.names]
        self.label = label_index(self.path, label_column, self.names, len(self.names))
        self._features = [j for j in range(len(self.names)) if j != self.label]
        V.check_table_columns(schema.empty_table().select(self._features), self.path)
        label_type = str(schema.types[self.label]).lower()
        #: What the label column holds: "int", "float" or "text" (text or categories).
        self.label_kind = ("int" if label_type.startswith(("int", "uint")) else "float"
                           if label_type.startswith(("float", "double", "halffloat"))
                           else "text")
        self._text = self.label_kind == "text"
        self.n_rows = int(self._file.metadata.num_rows)
        self.n_groups = int(self._file.metadata.num_row_groups)
        self.n_features = len(self._features)
        if self.n_rows == 0:
            raise ValueError(f"{self.path} has no rows")
        self.buffer_rows = V.check_int(buffer_rows, "buffer_rows", 1)
        self.classes = None if classes is None else list(classes)
        if self.classes is None and self._text:
            self.classes = self.label_values().tolist()
        if self.classes is not None and len(self.classes) < 2:
            raise ValueError(f"classes must name at least two classes, got {self.classes}")

    def __repr__(self) -> str:
        return (f"ParquetStream({self.path!r}, label_column={self.names[self.label]!r}: "
                f"{self.n_rows} rows, {self.n_features} features, {self.n_groups} row groups)")

    def _labels(self, column) -> np.ndarray:
        if column.null_count:
            raise ValueError(f"{self.path}: the label column {self.names[self.label]!r} has "
                             "missing values")
        values = column.to_numpy(zero_copy_only=False)
        return values.astype(str) if self._text else values

    def label_values(self) -> np.ndarray:
        """The distinct labels, sorted, read from the label column alone, one row group
        at a time (for `classes`)."""
        import pyarrow.compute as pc

        seen = []
        for g in range(self.n_groups):
            column = self._file.read_row_group(g, columns=[self.names[self.label]]).column(0)
            seen.append(self._labels(pc.unique(column)))
        return np.unique(np.concatenate(seen))

    def label_range(self) -> tuple[float, float]:
        """The smallest and the largest label (of a column of numbers), read as
        `label_values` is."""
        import pyarrow.compute as pc

        lo, hi = np.inf, -np.inf
        for g in range(self.n_groups):
            column = self._file.read_row_group(g, columns=[self.names[self.label]]).column(0)
            found = pc.min_max(column)
            lo, hi = min(lo, found["min"].as_py()), max(hi, found["max"].as_py())
        return lo, hi

    def _encode(self, y: np.ndarray, where: str) -> np.ndarray:
        keys, inverse = np.unique(y, return_inverse=True)
        index = {str(c): i for i, c in enumerate(self.classes)}
        unknown = [str(k) for k in keys if str(k) not in index]
        if unknown:
            raise ValueError(f"{where} has labels not among the classes: "
                             f"{', '.join(unknown[:5])} (classes: "
                             f"{', '.join(map(str, self.classes))})")
        return np.array([index[str(k)] for k in keys], dtype=np.int64)[inverse]

    def parts(self, groups, dtype=np.float64):
        """(X, y, where) blocks of `block_rows` rows: the row groups in the order given,
        each group's rows in file order (`cbackprop.streaming.Stream.parts`)."""
        for g in groups:
            where = f"{self.path}, row group {int(g)}"
            for batch in self._file.iter_batches(batch_size=self.block_rows,
                                                 row_groups=[int(g)], use_threads=False):
                X = V.table_array(batch.select(self._features), where, dtype)
                y = self._labels(batch.column(self.label))
                if self.classes is not None:
                    y = self._encode(y, where)
                yield X, y, where


# ---- synthetic problems -----------------------------------------------------

def make_spirals(n_samples: int = 300, n_classes: int = 3, noise: float = 0.2,
                 seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spirals in the plane, one arm per class: a problem no linear model solves.

    Arm c has points at radius r ∈ [0, 1] and angle 4r + 2πc/n_classes (plus
    Gaussian noise of standard deviation `noise` on the angle).

    Returns
    -------
    X : ndarray of float64, shape (n_samples, 2)
    y : ndarray of int64, shape (n_samples,), classes 0..n_classes-1 in turn
    """
    n_samples = V.check_int(n_samples, "n_samples", 1)
    n_classes = V.check_int(n_classes, "n_classes", 2)
    noise = V.check_real(noise, "noise", 0)
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples, dtype=np.int64) % n_classes
    r = rng.uniform(0.0, 1.0, n_samples)
    angle = 4.0 * r + 2.0 * np.pi * y / n_classes + rng.normal(0.0, noise, n_samples)
    X = np.column_stack([r * np.cos(angle), r * np.sin(angle)])
    return X, y


def make_xor(n_samples: int = 200, noise: float = 0.0,
             seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """XOR in the plane: the label is 1 where exactly one coordinate is positive.

    Points are uniform in [-1, 1]²; the label is taken before Gaussian noise of
    standard deviation `noise` moves them.

    Returns
    -------
    X : ndarray of float64, shape (n_samples, 2)
    y : ndarray of int64, shape (n_samples,), 0 or 1
    """
    n_samples = V.check_int(n_samples, "n_samples", 1)
    noise = V.check_real(noise, "noise", 0)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n_samples, 2))
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)
    return X + rng.normal(0.0, noise, X.shape), y


def make_regression(n_samples: int = 200, n_features: int = 1, noise: float = 0.1,
                    seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth non-linear regression target: y = Σⱼ sin(π xⱼ) / √d + noise.

    X is uniform in [-1, 1]^d; the noise is Gaussian with standard deviation
    `noise`.

    Returns
    -------
    X : ndarray of float64, shape (n_samples, n_features)
    y : ndarray of float64, shape (n_samples,)
    """
    n_samples = V.check_int(n_samples, "n_samples", 1)
    n_features = V.check_int(n_features, "n_features", 1)
    noise = V.check_real(noise, "noise", 0)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n_samples, n_features))
    y = np.sin(np.pi * X).sum(axis=1) / np.sqrt(n_features)
    return X, y + rng.normal(0.0, noise, n_samples)


# ---- data sources by name or path (the command line's DATA) ------------------

#: Data sets known by name; files are recognised by their suffix, folders as MNIST.
NAMED_DATASETS = ("digits", "spirals", "xor", "regression")
_TABLES = (".csv", ".csv.gz", ".txt", ".txt.gz", ".tsv", ".tsv.gz")
_COLUMNAR = (".parquet", ".arrow", ".feather")


def is_table(path: str) -> bool:
    """True for a path that load_dataset reads as a CSV/TSV table."""
    return path.lower().endswith(_TABLES)


def is_columnar(path: str) -> bool:
    """True for a Parquet or Arrow (Feather) file, whose labels are a named column."""
    return path.lower().endswith(_COLUMNAR)


def load_dataset(source: str, split: str = "train", label_column: int | str | None = None,
                 need_labels: bool = True, delimiter: str | None = None):
    """(X, y) for a data source: a name in NAMED_DATASETS, a .csv/.tsv/.txt
    table (label in `label_column`, default the last), an .npz with arrays X
    and y, or an MNIST directory of IDX files. y is None when need_labels is
    False and there is none.

    Named sets and MNIST have a training and a test part (`split`; a
    directory needs only that part's two files); a table or .npz file is used
    whole. digits pixels are scaled to [0, 1] (÷16), MNIST pixels too (÷255);
    files are used as they are. `label_column` and `delimiter` (default: tab
    for .tsv, else comma) are for tables only; given for anything else they
    raise ValueError rather than being ignored.
    """
    if not is_table(source):
        for name, value in ((("delimiter", delimiter),) if is_columnar(source) else
                            (("label_column", label_column), ("delimiter", delimiter))):
            if value is not None:
                raise ValueError(f"{name} is for .csv/.tsv tables; {source} has its labels "
                                 "built in")
    if source in NAMED_DATASETS:
        if source == "digits":
            X, y = load_digits()
            parts = train_test_split(X / 16.0, y, 0.25, seed=0)
            return (parts[0], parts[2]) if split == "train" else (parts[1], parts[3])
        make = {"spirals": make_spirals, "xor": make_xor,
                "regression": make_regression}[source]
        return make(n_samples=1000, seed=0 if split == "train" else 1)
    if os.path.isdir(source):
        return _mnist_split(_mnist_directory(source), split, scale=True)
    if not os.path.exists(source):
        raise FileNotFoundError(f"no data set or file named {source!r} (named data sets: "
                                f"{', '.join(NAMED_DATASETS)}; or a .csv, .npz or MNIST "
                                "directory)")
    name = source.lower()
    if name.endswith(".npz"):
        X, y = load_npz(source)
    elif is_columnar(source):
        column = -1 if label_column is None else label_column
        read = load_parquet if name.endswith(".parquet") else load_arrow
        X, y = read(source, label_column=column if need_labels else None)
    elif is_table(source):
        if delimiter is None:
            delimiter = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
        column = -1 if label_column is None else label_column
        X, y = load_csv(source, label_column=column if need_labels else None,
                        delimiter=delimiter)
    else:
        raise ValueError(f"{source}: unknown file type (expected .csv, .tsv, .parquet, "
                         ".arrow, .npz or an MNIST directory)")
    if need_labels and y is None:
        raise ValueError(f"{source} has no labels (an .npz needs an array named 'y')")
    return X, y


# ---- a process's share of a file's rows (data-parallel training) --------------
#
#     # mpirun -n 4 python train.py: each rank reads only its rows
#     from mpi4py import MPI
#     comm = MPI.COMM_WORLD
#     X, y = cb.datasets.load_share("train.npz", comm.rank, comm.size)
#     net.fit(X, y, optimizer=opt, batch_size=64, comm=comm)
#
# A rank's share is a contiguous block of rows (`share_rows`): a slice of a
# memory-mapped .npy or of an .npz member (memory-mapped when stored, streamed
# through when compressed), or the row groups of a Parquet file that hold it.
# Nothing outside the share is held in memory; the whole label column is read
# only where asked (`read_labels`: the command line decides the classes from
# every label, so that every rank builds the same network).

SHARED_FILES = (".npy", ".npz", ".parquet")


def share_rows(n_rows: int, rank: int, size: int) -> slice:
    """The rows of process `rank` of `size`: a contiguous block, the blocks of
    sizes differing by at most one (as `numpy.array_split`), in rank order."""
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in 0..{size - 1}, got {rank}")
    base, extra = divmod(n_rows, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def _npy_header(f, path):
    """(shape, dtype) of the .npy stream f, positioned at its data; refuses what a
    share cannot be read from (object arrays, Fortran order, no rows)."""
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
    except ValueError as exc:
        raise ValueError(f"{path} is not a readable .npy array: {exc}") from None
    if dtype.hasobject:
        raise ValueError(f"{path} holds Python objects: refused (it would need unpickling)")
    if fortran or len(shape) == 0:
        raise ValueError(f"{path}: a share of rows needs a C-ordered array of at least one "
                         f"dimension, got shape {shape}" + (" in Fortran order" if fortran
                                                            else ""))
    return shape, dtype


def _npz_member_rows(path: str, name: str, rows: slice | None):
    """Rows `rows` of the array `name` of an .npz (rows None: its shape alone),
    or None when it has none."""
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(name + ".npy")
        except KeyError:
            return None
        with archive.open(info) as f:
            shape, dtype = _npy_header(f, f"{path}[{name}]")
            if rows is None:
                return shape
            lo, hi, _ = rows.indices(shape[0])
            hi = max(lo, hi)
            row_bytes = dtype.itemsize * math.prod(shape[1:])
            if info.compress_type == zipfile.ZIP_STORED:
                # Stored: map the member's bytes where they lie in the file.
                with open(path, "rb") as raw:
                    raw.seek(info.header_offset)
                    local = raw.read(30)
                data = (info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                        + int.from_bytes(local[28:30], "little") + f.tell())
                view = np.memmap(path, dtype=dtype, mode="r", offset=data,
                                 shape=(shape[0],) + tuple(shape[1:]))
                return np.array(view[lo:hi])
            # Compressed: decompressed in passing, 1 MB at a time, keeping the share.
            out = np.empty((hi - lo,) + tuple(shape[1:]), dtype=dtype)
            skip, into, done = lo * row_bytes, memoryview(out).cast("B"), 0
            while skip > 0:
                skip -= len(f.read(min(skip, 1 << 20)))
            while done < into.nbytes:
                chunk = f.read(min(into.nbytes - done, 1 << 20))
                if not chunk:
                    raise ValueError(f"{path}[{name}] ends before its last row")
                into[done:done + len(chunk)] = chunk
                done += len(chunk)
            return out


def _parquet_file(path: str):
    _pyarrow("reading Parquet files")
    import pyarrow.parquet as pq

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return pq.ParquetFile(path)
    except Exception as exc:      # pyarrow's errors have no common base outside pyarrow
        raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None


def _check_shared(path: str) -> str:
    path = os.fspath(path)
    if not path.lower().endswith(SHARED_FILES):
        raise ValueError(f"{path}: a share of rows is read from a .npy, .npz or .parquet "
                         "file, not this one")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    return path


def count_rows(path) -> int:
    """The rows of a .npy, .npz (its X) or Parquet file, from its header alone."""
    path = _check_shared(path)
    name = path.lower()
    if name.endswith(".parquet"):
        return int(_parquet_file(path).metadata.num_rows)
    if name.endswith(".npy"):
        with open(path, "rb") as f:
            return int(_npy_header(f, path)[0][0])
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .npz file (a zip archive of .npy arrays)")
    shape = _npz_member_rows(path, "X", None)
    if shape is None:
        raise ValueError(f"{path} has no array named 'X'")
    return int(shape[0])


def read_rows(path, rows: slice, label_column: int | str | None = -1):
    """(X, y) of the rows `rows` of a file, reading only them: a memory-mapped
    .npy (X; y is None), an .npz's X and y (y None when it has none), or the
    row groups of a Parquet file that hold them (label_column as `load_parquet`).
    """
    path = _check_shared(path)
    name = path.lower()
    if name.endswith(".npy"):
        with open(path, "rb") as f:
            _npy_header(f, path)              # refuse what cannot be mapped, by name
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[rows]), None
    if name.endswith(".npz"):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not a .npz file (a zip archive of .npy arrays)")
        X = _npz_member_rows(path, "X", rows)
        if X is None:
            raise ValueError(f"{path} has no array named 'X'")
        if X.ndim != 2:
            raise ValueError(f"{path}: X must be 2-D (n_samples, n_features), got {X.ndim}-D")
        return X, _npz_member_rows(path, "y", rows)
    pf, pa = _parquet_file(path), _pyarrow("reading Parquet files")
    lo, hi, _ = rows.indices(pf.metadata.num_rows)
    hi = max(lo, hi)
    X = None
    labels, start, done = [], 0, 0
    try:
        for g in range(pf.metadata.num_row_groups):
            count = pf.metadata.row_group(g).num_rows
            if start < hi and start + count > lo:
                # One row group at a time, converted into the share's rows.
                first = max(lo, start)
                part = pf.read_row_group(g).slice(first - start, min(hi, start + count) - first)
                Xg, yg = _split_table(part, label_column, path)
                del part
                pa.default_memory_pool().release_unused()    # the group's buffers, now
                if X is None:
                    X = np.empty((hi - lo, Xg.shape[1]), dtype=Xg.dtype)
                X[done:done + Xg.shape[0]] = Xg
                done += Xg.shape[0]
                labels.append(yg)
            start += count
        if X is None:                     # no rows: the columns still say the shape
            return _split_table(pf.schema_arrow.empty_table(), label_column, path)
    except (TypeError, ValueError):       # a column refused by name (_split_table)
        raise
    except Exception as exc:      # pyarrow's errors have no common base outside pyarrow
        raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None
    return X, (None if label_column is None else np.concatenate(labels))


def read_labels(path, label_column: int | str | None = -1) -> np.ndarray | None:
    """Every row's label of a .npz (its y) or Parquet file (the label column
    alone), as `read_rows` gives them; None for a .npy or an .npz without y."""
    path = _check_shared(path)
    name = path.lower()
    if name.endswith(".npy") or label_column is None:
        return None
    if name.endswith(".npz"):
        return _npz_member_rows(path, "y", slice(None))
    pf = _parquet_file(path)
    names = list(pf.schema_arrow.names)
    index = label_index(path, label_column, names, len(names))
    table = pf.read(columns=[names[index]])
    # A feature column of zeros beside it, so that it splits as the whole table would.
    return _split_table(table.append_column("_", _pyarrow("").array(np.zeros(table.num_rows))),
                        0, path)[1]


def load_share(path, rank: int, size: int, label_column: int | str | None = -1):
    """(X, y) of process `rank` of `size`'s share of a file's rows
    (`share_rows`), reading only those rows: see `read_rows`.

    The pattern of data-parallel training on a file larger than one process
    should hold: ``X, y = load_share(path, comm.rank, comm.size)`` on every
    rank, then ``net.fit(X, y, ..., comm=comm)``.
    """
    return read_rows(path, share_rows(count_rows(path), rank, size), label_column)
