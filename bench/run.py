"""cbackprop's benchmark suite: training speed against NumPy, PyTorch and scikit-learn.

    python bench/run.py            # everything (several minutes on 2 cores)
    python bench/run.py --quick    # a smaller sample of the same, under a minute
    python bench/run.py --workloads tiny,small --dtypes float32 --threads 1

Every implementation trains the same network on the same synthetic data (see
bench/_peers.py). Times are medians over repeats, and the implementations are
interleaved within each repeat so that a change in the machine's speed hits all
of them alike. Speed-ups are ratios against peers measured in the same run;
"% GEMM" is the necessary GEMM flops per step over the time, as a share of
what one big sgemm/dgemm reaches in the same run, on the same BLAS and threads.

The table goes to stdout, the details (BLAS vendor, kernel, threads, every
repeat) to bench/results/*.json; --readme rewrites the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _peers  # noqa: E402
from _peers import OptimizerSpec, Workload  # noqa: E402

import cbackprop as cb  # noqa: E402
from cbackprop import _threads  # noqa: E402
from cbackprop._core._blas import py_gemm  # noqa: E402

WORKLOADS = {
    "tiny": Workload("tiny", (64, 32, 10), 32, "cross_entropy", 256),
    "small": Workload("small", (784, 128, 10), 64, "cross_entropy", 64),
    "medium": Workload("medium", (784, 512, 512, 10), 128, "cross_entropy", 16),
    "large": Workload("large", (1024, 4096, 4096, 1024), 256, "mse", 2),
    "online": Workload("online", (784, 128, 10), 1, "cross_entropy", 1024),
}
OPTIMIZERS = {"sgd": OptimizerSpec("sgd", 1e-3), "adam": OptimizerSpec("adam", 1e-3)}
PEER_NAMES = ("numpy", "torch", "sklearn", "jax")

# The targets, float32 and float64 alike (1 thread): the speed-up over
# the fastest peer, and the share of the GEMM limit.
SPEEDUP_TARGETS = {"tiny": 7.0, "small": 1.2, "medium": 1.1, "online": 4.0}
GEMM_TARGETS = {"medium": 0.90, "large": 0.95}


def median(xs):
    return statistics.median(xs)


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall time, CPU seconds busy on the whole machine, CPU seconds of this
    process): two snapshots tell how many cores other processes kept busy."""
    return _threads.cpu_seconds() or (time.perf_counter(), float("nan"), time.process_time())


def other_load(before, after) -> float:
    """Cores that other processes kept busy on average between two snapshots."""
    wall = after[0] - before[0]
    return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / wall)


def blas_report() -> list[dict]:
    """The BLAS libraries loaded in this process (vendor, version, kernel, threads),
    the one cbackprop calls marked "used"."""
    from cbackprop import _providers

    _providers.ensure_loaded()
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer",
            "filepath", "used", "provider")
    return [{k: lib.get(k) for k in keep} for lib in _threads.blas_info()]


def provider_report() -> dict:
    """Which GEMM provider runs which shape class (cbackprop/_providers.py)."""
    from cbackprop import _providers

    return {f"{dt} {t}t": row for (dt, t), row in _providers.effective_rule().items()}


def gemm_limit(dtype, threads: int, n: int, repeats: int) -> float:
    """GFLOP/s of an n×n×n GEMM through cbackprop's own BLAS entry point (median),
    the best over the GEMM providers loaded (SciPy's OpenBLAS, the OpenBLAS
    wheel, MKL): the rate the fastest GEMM this machine has reaches."""
    from cbackprop import _providers

    _providers.ensure_loaded()
    entries = [0] + [_providers.PROVIDERS.index(p.name) for p in _providers.loaded()]
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty((n, n), dtype)
    rates = {e: [] for e in entries}
    with _threads.BlasThreads(threads), threadpool_limits(threads, user_api="blas"):
        for e in entries:
            py_gemm(A, B, C, kernel=e)
        for _ in range(repeats):
            for e in entries:
                t0 = time.perf_counter()
                py_gemm(A, B, C, repeat=2, kernel=e)
                rates[e].append(2 * 2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return max(median(r) for r in rates.values())


def measure_config(w: Workload, dtype, opt_name: str, threads: int, peers, repeats: int,
                   seconds: float, log) -> dict:
    """Median seconds per step of cbackprop and each peer for one configuration."""
    X, y = _peers.make_data(w, dtype)
    opt = OPTIMIZERS[opt_name]
    names = ["cbackprop"] + list(peers)
    impls, epochs = {}, {}
    samples, cpu = {n: [] for n in names}, {n: [] for n in names}
    with threadpool_limits(threads, user_api="blas"):
        for name in names:
            impls[name] = _peers.build(name, w, dtype, opt, threads, X, y)
            impls[name].run(1)               # warm-up (JAX compiles here)
            per_epoch = impls[name].timed_run(1)[0]
            epochs[name] = max(1, round(seconds / max(per_epoch, 1e-9)))
        for _ in range(repeats):
            for name in names:
                if threads > 1:
                    # Let the last implementation's idle BLAS workers stop spinning
                    # (OpenBLAS: ~0.1 s), so they do not steal this one's second core.
                    time.sleep(0.12)
                wall, cpu_s = impls[name].timed_run(epochs[name])
                steps = epochs[name] * w.steps
                samples[name].append(wall / steps)
                cpu[name].append(cpu_s / steps)
    result = {"workload": w.name, "dtype": np.dtype(dtype).name, "threads": threads,
              "optimizer": opt_name, "batch": w.batch, "flops_per_step": w.flops,
              "times": samples, "step_s": {n: median(s) for n, s in samples.items()},
              "cpu_step_s": {n: median(s) for n, s in cpu.items()}}
    log(f"  {w.name:7s} {result['dtype']} {threads}t {opt_name:4s} "
        + "  ".join(f"{n} {t * 1e6:9.1f} us" for n, t in result["step_s"].items()))
    return result


def import_cost(repeats: int = 5) -> dict:
    """Seconds to import cbackprop in a fresh interpreter, and the RSS it adds (MiB)."""
    code = (
        "import time, re\n"
        "def rss():\n"
        "    return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
        "r0 = rss(); t0 = time.perf_counter()\n"
        "import cbackprop\n"
        "print(time.perf_counter() - t0, rss() - r0, rss())\n"
    )
    times, added, total = [], [], []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, cwd=str(ROOT), check=True).stdout.split()
        times.append(float(out[0]))
        added.append(int(out[1]) / 1024)
        total.append(int(out[2]) / 1024)
    return {"import_s": median(times), "rss_added_mib": median(added),
            "rss_total_mib": median(total)}


def concurrent_training(w: Workload, dtype, epochs: int, repeats: int) -> dict:
    """Throughput of two networks trained at once on two Python threads, against
    the same two fits one after the other; and whether threaded training gives
    bitwise the results of sequential training."""
    X, y = _peers.make_data(w, dtype)

    def fresh():
        return [_peers.make_network(w, dtype) for _ in range(2)]

    def fit(net):
        net.fit(X, y, optimizer=cb.SGD(lr=1e-3, momentum=0.9), epochs=epochs,
                batch_size=w.batch)

    fit(fresh()[0])   # warm-up
    seq, par = [], []
    for _ in range(repeats):
        nets_s = fresh()
        t0 = time.perf_counter()
        for net in nets_s:
            fit(net)
        seq.append(time.perf_counter() - t0)
        time.sleep(0.15)
        nets_p = fresh()
        threads = [threading.Thread(target=fit, args=(net,)) for net in nets_p]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        par.append(time.perf_counter() - t0)
        time.sleep(0.15)
    # Bitwise equality needs one BLAS thread on both sides (a fit alone may use
    # two, whose GEMMs round differently): checked on fits with n_threads=1.
    pinned = [_peers.make_network(w, dtype, n_threads=1) for _ in range(4)]
    for net in pinned[:2]:
        fit(net)
    threads = [threading.Thread(target=fit, args=(net,)) for net in pinned[2:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same = all(np.array_equal(a.theta, b.theta) for a, b in zip(pinned[:2], pinned[2:]))
    return {"workload": w.name, "dtype": np.dtype(dtype).name, "epochs": epochs,
            "sequential_s": median(seq), "threaded_s": median(par),
            "speedup": median(seq) / median(par), "results_equal": bool(same)}


# ---- the report ------------------------------------------------------------

def fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def table(results: list[dict], limits: dict) -> str:
    peers = [p for p in PEER_NAMES if any(p in r["step_s"] for r in results)]
    head = (["workload", "dtype", "thr", "opt", "cbackprop / step", "CPU / step", "samples/s",
             "% GEMM"] + [f"× {p}" for p in peers])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        t = r["step_s"]["cbackprop"]
        limit = limits[(r["dtype"], r["threads"])]
        pct = r["flops_per_step"] / t / 1e9 / limit * 100
        cpu = r["cpu_step_s"]["cbackprop"]
        cells = [r["workload"], r["dtype"], str(r["threads"]), r["optimizer"], fmt_time(t),
                 fmt_time(cpu), f"{r['batch'] / t:,.0f}", f"{pct:.0f} %"]
        cells += [f"{r['step_s'][p] / t:.2f}" if p in r["step_s"] else "–" for p in peers]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def check_targets(results, limits, extras) -> list[tuple[str, str, str, bool]]:
    """(target, measured, verdict text, met) for every target the run can judge."""
    out = []
    by_key = {(r["workload"], r["dtype"], r["threads"], r["optimizer"]): r for r in results}
    for r in results:
        if r["threads"] != 1:
            continue
        w, t = r["workload"], r["step_s"]["cbackprop"]
        label = f"{w} {r['dtype']} {r['optimizer']}"
        peer_times = {p: s for p, s in r["step_s"].items() if p != "cbackprop"}
        if w in SPEEDUP_TARGETS and peer_times:
            best = min(peer_times, key=peer_times.get)
            ratio = peer_times[best] / t
            cpu = r["cpu_step_s"]
            cpu_ratio = min(cpu[p] for p in peer_times) / cpu["cbackprop"]
            goal = SPEEDUP_TARGETS[w]
            out.append((f"{label}: ≥ {goal}× the fastest peer",
                        f"{ratio:.2f}× ({best}); CPU time {cpu_ratio:.2f}×",
                        _verdict(ratio, goal), ratio >= goal))
        if w in GEMM_TARGETS:
            share = r["flops_per_step"] / t / 1e9 / limits[(r["dtype"], 1)]
            cpu_share = r["flops_per_step"] / r["cpu_step_s"]["cbackprop"] / 1e9 / limits[
                (r["dtype"], 1)]
            goal = GEMM_TARGETS[w]
            out.append((f"{label}: ≥ {goal:.0%} of the GEMM limit",
                        f"{share:.0%}; CPU time {cpu_share:.0%}",
                        _verdict(share, goal), share >= goal))
    for r in results:
        if r["threads"] != 2:
            continue
        one = by_key.get((r["workload"], r["dtype"], 1, r["optimizer"]))
        if one is None:
            continue
        gain = one["step_s"]["cbackprop"] / r["step_s"]["cbackprop"]
        label = f"{r['workload']} {r['dtype']} {r['optimizer']}"
        if r["workload"] == "large":
            out.append((f"{label}: 2 threads ≥ 1.8× 1 thread", f"{gain:.2f}×",
                        _verdict(gain, 1.8), gain >= 1.8))
        out.append((f"{label}: 2 threads not slower than 1", f"{gain:.2f}×",
                    _verdict(gain, 1.0), gain >= 1.0))
    if "concurrent" in extras:
        c = extras["concurrent"]
        out.append((f"2 networks ({c['workload']}) on 2 threads ≥ 1.8× sequential",
                    f"{c['speedup']:.2f}×", _verdict(c["speedup"], 1.8), c["speedup"] >= 1.8))
    if "import" in extras:
        s = extras["import"]["import_s"]
        out.append(("import ≤ 0.3 s", f"{s:.3f} s", _verdict(0.3, s), s <= 0.3))
    return out


def _verdict(value: float, goal: float) -> str:
    if value >= goal:
        return "met"
    return f"missed by {(1 - value / goal) * 100:.0f} %"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "cbackprop": cb.__version__,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}


def render(info, results, limits, extras, targets, skipped) -> str:
    lines = [f"Machine: {info['machine']['cpu']}, {info['machine']['cores']} cores, "
             f"Python {info['machine']['python']}, NumPy {info['machine']['numpy']}"
             + (f", torch {info['versions']['torch']}" if info["versions"].get("torch") else "")
             + (f", scikit-learn {info['versions']['sklearn']}"
                if info["versions"].get("sklearn") else "")
             + (f", JAX {info['versions']['jax']}" if info["versions"].get("jax") else "") + ".",
             "BLAS: " + "; ".join(
                 f"{b['internal_api']} {b['version']} ({b['architecture']} kernel, "
                 f"{b['threading_layer']}) {Path(b['filepath']).name}" for b in info["blas"]),
             "GEMM providers (shape classes row/small/medium/large): " + "; ".join(
                 f"{k}: " + "/".join(row.values()) for k, row in info.get("providers", {}).items()),
             "GEMM limit (GFLOP/s, one n×n×n GEMM, the best provider): " + ", ".join(
                 f"{dt} {th}t {v:.1f}" for (dt, th), v in sorted(limits.items())),
             f"Run: {info['date']}, mode {info['mode']}, {info['repeats']} repeats, "
             "medians of wall time; `× peer` = peer time / cbackprop time (above 1: "
             "cbackprop faster); CPU / step = this process's CPU time (all its threads), "
             "which other processes on the machine disturb less.",
             f"Other processes kept {info['other_processes_cores']:.2f} of the "
             f"{info['machine']['cores']} cores busy on average during the run"
             + (": not an idle machine, so 2-thread and concurrent figures understate what "
                "an idle one gives." if info["other_processes_cores"] > 0.2 else "."),
             ""]
    if skipped:
        lines += ["Skipped peers: " + "; ".join(f"{p} ({why})" for p, why in skipped.items()),
                  ""]
    lines += [table(results, limits), ""]
    if "import" in extras:
        i = extras["import"]
        lines.append(f"Import: {i['import_s'] * 1e3:.0f} ms, +{i['rss_added_mib']:.1f} MiB RSS "
                     f"({i['rss_total_mib']:.1f} MiB in all).")
    if "concurrent" in extras:
        c = extras["concurrent"]
        lines.append(f"Two networks ({c['workload']}, {c['dtype']}) on two Python threads: "
                     f"{c['threaded_s']:.2f} s against {c['sequential_s']:.2f} s one after "
                     f"the other ({c['speedup']:.2f}×); threaded = sequential training "
                     f"bitwise (n_threads=1): {c['results_equal']}.")
    lines += ["", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {v} |" for t, m, v, _ in targets]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller sample (under a minute)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--optimizers", default=None, help="default sgd,adam (--quick: sgd)")
    ap.add_argument("--peers", default="numpy,torch,sklearn,jax")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None,
                    help="target seconds per timed run of one implementation")
    ap.add_argument("--no-extras", action="store_true",
                    help="skip the import-time and concurrent-training measurements")
    ap.add_argument("--json", default=None, help="where to write the JSON results")
    ap.add_argument("--readme", action="store_true", help="rewrite the table in bench/README.md")
    args = ap.parse_args(argv)

    quick = args.quick
    repeats = args.repeats or (3 if quick else 5)
    seconds = args.seconds or (0.02 if quick else 0.15)
    optimizers = (args.optimizers or ("sgd" if quick else "sgd,adam")).split(",")
    dtypes = [np.dtype(d).type for d in args.dtypes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    workloads = [WORKLOADS[n] for n in args.workloads.split(",")]
    peers, skipped = [], {}
    for p in args.peers.split(","):
        why = _peers.available(p)
        if why is None:
            peers.append(p)
        else:
            skipped[p] = why

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    snap_before = cpu_snapshot()
    limits = {}
    for dt in dtypes:
        for th in thread_counts:
            limits[(np.dtype(dt).name, th)] = gemm_limit(dt, th, 1024 if quick else 2048,
                                                         3 if quick else 5)
            log(f"GEMM limit {np.dtype(dt).name} {th} thread(s): "
                f"{limits[(np.dtype(dt).name, th)]:.1f} GFLOP/s")

    results = []
    for w in workloads:
        big = w.name == "large"
        if quick:   # an eighth of the data per epoch (large: 1 step, no scikit-learn)
            w = Workload(w.name, w.sizes, w.batch, w.loss, max(1, w.steps // 8))
        for dt in dtypes:
            if big and quick and dt is not np.float32:
                continue
            for th in thread_counts:
                for opt in optimizers:
                    # large is heavy on 2 cores: 3 repeats of one epoch (2 steps).
                    # quick: peers at 1 thread only (a 2-thread peer on a busy core
                    # can take 100× longer), and no scikit-learn on large.
                    ps = [p for p in peers if not (quick and (th > 1 or big and p == "sklearn"))]
                    results.append(measure_config(
                        w, dt, opt, th, ps, 2 if big and quick else (3 if big else repeats),
                        0.0 if big else seconds, log))

    extras = {}
    if not args.no_extras:
        extras["import"] = import_cost(3 if quick else 7)
        extras["concurrent"] = concurrent_training(WORKLOADS["small"], np.float32,
                                                   4 if quick else 8, 3 if quick else 5)

    other = other_load(snap_before, cpu_snapshot())
    # Read from the installed metadata: importing JAX here would start XLA in this process.
    dists = {"torch": "torch", "sklearn": "scikit-learn", "jax": "jax"}
    versions = {mod: importlib.metadata.version(dist) for mod, dist in dists.items()
                if mod in peers}
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "mode": "quick" if quick else "full", "repeats": repeats, "machine": machine(),
            "blas": blas_report(), "providers": provider_report(), "versions": versions,
            "other_processes_cores": other}
    targets = check_targets(results, limits, extras)
    text = render(info, results, limits, extras, targets, skipped)
    print(text)
    log(f"(benchmark took {time.perf_counter() - start:.0f} s)")

    out = Path(args.json) if args.json else (
        ROOT / "bench" / "results" / f"{info['date'].replace(':', '')}-{info['mode']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        **info, "gemm_limit_gflops": {f"{d} {t}": v for (d, t), v in limits.items()},
        "skipped": skipped, "results": results, "extras": extras,
        "targets": [dict(target=t, measured=m, verdict=v, met=ok) for t, m, v, ok in targets],
    }, indent=1))
    log(f"wrote {out}")
    if args.readme:
        update_readme(text)
    return 0


def update_readme(text: str) -> None:
    path = ROOT / "bench" / "README.md"
    begin, end = "<!-- results: begin -->", "<!-- results: end -->"
    doc = path.read_text()
    head, rest = doc.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
