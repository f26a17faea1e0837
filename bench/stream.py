"""Training on a Parquet file: streamed (`cb.datasets.ParquetStream`) against loaded whole.

    python bench/stream.py                          # 400,000 rows x 50 float32 features
    python bench/stream.py --rows 100000 --epochs 1,3
    python bench/stream.py --rows 800000 --ways stream --out stream_800k.json

Writes one Parquet file (row groups of --group rows, an integer label column) into a
temporary folder, then runs each way in a fresh process, interleaved, --repeat times:

- stream: `net.fit(ParquetStream(path, buffer_rows=B), epochs=E)`;
- whole:  `X, y = load_parquet(path)`, X as float32, `net.fit(X, y, epochs=E)`.

Each run's time is from opening the file to the end of the fit (reading is part of it),
with its peak anonymous memory (RssAnon, sampled every 2 ms) above the process's before
the file is opened. Network 50-64-2 (relu, softmax), Adam, batch 256, float32, one BLAS
thread. Prints the medians and writes bench/results/stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent

RUN = """
import json, sys, threading, time
import numpy as np
import pyarrow.parquet
import cbackprop as cb

def anonymous_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("RssAnon")) / 1e3

path, way, epochs, buffer_rows, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), \\
    int(sys.argv[4]), int(sys.argv[5])
net = cb.Network(k, [cb.Dense(64, "relu"), cb.Dense(2, "softmax")], seed=0, n_threads=1)
net.fit(np.zeros((256, k), np.float32), np.zeros(256, int), batch_size=256)   # warm
before, peak, done = anonymous_mb(), [0.0], []

def watch():
    while not done:
        peak[0] = max(peak[0], anonymous_mb() - before)
        time.sleep(0.002)

watcher = threading.Thread(target=watch)
watcher.start()
start = time.perf_counter()
if way == "stream":
    data = cb.datasets.ParquetStream(path, buffer_rows=buffer_rows)
    history = net.fit(data, epochs=epochs, batch_size=256)
else:
    X, y = cb.datasets.load_parquet(path)
    history = net.fit(X.astype(np.float32), y, epochs=epochs, batch_size=256)
seconds = time.perf_counter() - start
done.append(True)
watcher.join()
print(json.dumps({"seconds": seconds, "peak_mb": max(peak[0], anonymous_mb() - before),
                  "loss": history["loss"][-1]}))
"""


def _write(path: Path, rows: int, features: int, group: int) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=features)
    writer = None
    for start in range(0, rows, group):
        X = rng.normal(size=(min(group, rows - start), features)).astype(np.float32)
        table = pa.table({**{f"x{j}": X[:, j] for j in range(features)},
                          "label": (X @ w > 0).astype(np.int64)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--group", type=int, default=50_000, help="rows per row group")
    parser.add_argument("--buffer-rows", type=int, default=65536)
    parser.add_argument("--epochs", default="1,3")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ways", default="stream,whole")
    parser.add_argument("--out", default="stream.json", help="under bench/results/")
    args = parser.parse_args()
    epochs = [int(e) for e in args.epochs.split(",")]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.parquet"
        _write(path, args.rows, args.features, args.group)
        size_mb = path.stat().st_size / 1e6
        loads = []
        for _ in range(args.repeat):
            for e in epochs:
                for way in args.ways.split(","):
                    out = subprocess.run(
                        [sys.executable, "-c", RUN, str(path), way, str(e),
                         str(args.buffer_rows), str(args.features)],
                        env=env, capture_output=True, text=True, check=True).stdout
                    runs.setdefault(f"{way} {e}", []).append(json.loads(out))
                    loads.append(os.getloadavg()[0])
    print(f"{args.rows:,} rows x {args.features} float32 features, row groups of "
          f"{args.group:,}: Parquet {size_mb:.0f} MB; buffer {args.buffer_rows:,} rows; "
          f"medians of {args.repeat}, interleaved; {_cpu()}, load {min(loads):.1f}-"
          f"{max(loads):.1f}")
    print(f"{'way':<10} {'epochs':>6} {'seconds':>8} {'rows/s':>10} {'peak RssAnon MB':>16} "
          f"{'loss':>7}")
    table = {}
    for key, results in runs.items():
        way, e = key.split()
        seconds = statistics.median(r["seconds"] for r in results)
        peak = statistics.median(r["peak_mb"] for r in results)
        table[key] = {"seconds": seconds, "rows_per_s": args.rows * int(e) / seconds,
                      "peak_mb": peak, "loss": results[0]["loss"],
                      "all_seconds": [r["seconds"] for r in results]}
        print(f"{way:<10} {e:>6} {seconds:>8.2f} {args.rows * int(e) / seconds:>10,.0f} "
              f"{peak:>16.1f} {results[0]['loss']:>7.4f}")
    out = {"rows": args.rows, "features": args.features, "group": args.group,
           "buffer_rows": args.buffer_rows, "file_mb": size_mb, "runs": table,
           "cpu": _cpu(), "cores": os.cpu_count(), "load": [min(loads), max(loads)],
           "pyarrow": pa.__version__}
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    (results / args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
