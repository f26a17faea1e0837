"""Reading a table: cbackprop's loaders against pandas and pyarrow on the same file.

    python bench/read.py                 # 200,000 rows x 50 features + a text label
    python bench/read.py --rows 50000    # less

Writes one CSV (with a header and text labels, as a user's file is) and the same
table as Parquet into a temporary folder, then times each reader on it, interleaved,
best of --repeat runs: cbackprop's `load_csv` through pyarrow (the default when the
`[arrow]` extra is installed) and through the csv module (its fallback), pandas'
C parser, pyarrow's CSV reader alone; `load_parquet`, pandas and pyarrow on the
Parquet file. Every reader ends with the float64 feature matrix (the conversion
is part of the time). Prints a table and writes bench/results/read.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cbackprop import datasets  # noqa: E402


def _write(folder: Path, rows: int, features: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features))
    labels = rng.choice(["cat", "dog", "bird", "fish"], rows)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(features)])
    frame["species"] = labels
    csv, parquet = folder / "table.csv", folder / "table.parquet"
    frame.to_csv(csv, index=False, float_format="%.10g")
    frame.to_parquet(parquet)
    return csv, parquet


def _readers(csv: Path, parquet: Path) -> dict:
    def fallback():
        original = datasets._arrow_csv
        datasets._arrow_csv = lambda *a: None
        try:
            return datasets.load_csv(csv, label_column="species")
        finally:
            datasets._arrow_csv = original

    def as_arrays(table):
        return (np.column_stack([c.to_numpy() for c in table.columns[:-1]]),
                table.column("species").to_numpy())

    def as_frame_arrays(frame):
        return frame.drop(columns="species").to_numpy(np.float64), frame["species"].to_numpy()

    pandas_csv = lambda: as_frame_arrays(pd.read_csv(csv))            # noqa: E731
    arrow_csv = lambda: as_arrays(pa_csv.read_csv(csv))              # noqa: E731
    pandas_parquet = lambda: as_frame_arrays(pd.read_parquet(parquet))  # noqa: E731
    arrow_parquet = lambda: as_arrays(pq.read_table(parquet))          # noqa: E731

    return {
        "csv: cbackprop load_csv (pyarrow)": lambda: datasets.load_csv(csv,
                                                                       label_column="species"),
        "csv: cbackprop load_csv (csv module)": fallback,
        "csv: pandas read_csv": pandas_csv,
        "csv: pyarrow read_csv": arrow_csv,
        "parquet: cbackprop load_parquet": lambda: datasets.load_parquet(
            parquet, label_column="species"),
        "parquet: pandas read_parquet": pandas_parquet,
        "parquet: pyarrow read_table": arrow_parquet,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        csv, parquet = _write(Path(folder), args.rows, args.features)
        readers = _readers(csv, parquet)
        reference = readers["csv: cbackprop load_csv (csv module)"]()
        for name, read in readers.items():      # all read the same numbers
            X = read()[0]
            if name.startswith("csv"):
                np.testing.assert_array_equal(X, reference[0], err_msg=name)
        times = {name: [] for name in readers}
        for _ in range(args.repeat):
            for name, read in readers.items():
                start = time.perf_counter()
                read()
                times[name].append(time.perf_counter() - start)
        sizes = {"csv_mb": csv.stat().st_size / 1e6, "parquet_mb": parquet.stat().st_size / 1e6}
    base = min(times["csv: pandas read_csv"])
    print(f"{args.rows:,} rows x {args.features} features + a text label: CSV "
          f"{sizes['csv_mb']:.0f} MB, Parquet {sizes['parquet_mb']:.0f} MB; best of "
          f"{args.repeat}, interleaved")
    print(f"{'reader':<40} {'seconds':>8} {'/ pandas read_csv':>18}")
    for name, t in times.items():
        print(f"{name:<40} {min(t):>8.3f} {min(t) / base:>18.2f}")
    out = {"rows": args.rows, "features": args.features, **sizes,
           "seconds": {k: min(v) for k, v in times.items()},
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "pyarrow": pa.__version__, "pandas": pd.__version__}
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    (results / "read.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
