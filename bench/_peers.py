"""The implementations bench/run.py times: cbackprop and what a user would pick instead.

Every peer trains the same architecture (ReLU hidden layers; softmax +
cross-entropy or identity + MSE output) from the same initial weights (copied
from the cbackprop network, except scikit-learn, which initialises its own),
with the same optimizer (SGD with momentum 0.9, or Adam), batch size and
per-epoch shuffling, on the same arrays. `run(epochs)` trains that many
epochs; run.py divides the time by the number of steps.

Peers that are not installed are reported as skipped, with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass

import numpy as np

import cbackprop as cb


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple[int, ...]   # n_inputs, hidden widths…, n_outputs
    batch: int
    loss: str                # "cross_entropy" or "mse"
    steps: int               # steps per epoch (the data set has steps·batch rows)

    @property
    def flops(self) -> float:
        """Necessary GEMM flops per step: forward, ∂W, and δ for every layer but the first."""
        pairs = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        return 2.0 * self.batch * (2 * sum(pairs) + sum(pairs[1:]))


@dataclass(frozen=True)
class OptimizerSpec:
    kind: str                # "sgd" or "adam"
    lr: float

    def make_cb(self):
        return cb.SGD(lr=self.lr, momentum=0.9) if self.kind == "sgd" else cb.Adam(lr=self.lr)


def make_data(w: Workload, dtype, seed: int = 0):
    """Synthetic rows: X ~ N(0, 1); labels (or targets) from a fixed random linear map."""
    rng = np.random.default_rng(seed)
    n = w.steps * w.batch
    X = rng.standard_normal((n, w.sizes[0])).astype(dtype)
    proj = rng.standard_normal((w.sizes[0], w.sizes[-1])) / np.sqrt(w.sizes[0])
    if w.loss == "cross_entropy":
        y = np.argmax(X @ proj, axis=1).astype(np.int64)
    else:
        y = np.tanh(X @ proj).astype(dtype)
    return X, y


def make_network(w: Workload, dtype, n_threads=None) -> cb.Network:
    out = "softmax" if w.loss == "cross_entropy" else "identity"
    layers = [cb.Dense(u, "relu") for u in w.sizes[1:-1]] + [cb.Dense(w.sizes[-1], out)]
    return cb.Network(w.sizes[0], layers, loss=w.loss, dtype=dtype, seed=0, n_threads=n_threads)


class Impl:
    """One implementation set up for one (workload, dtype, optimizer, threads)."""

    name = ""

    def run(self, epochs: int) -> None:
        raise NotImplementedError

    def params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The trained (W, b) of every layer, W as n_in × n_out (for the tests)."""
        raise NotImplementedError

    def timed_run(self, epochs: int) -> tuple[float, float]:
        """(wall seconds, CPU seconds) of run(epochs): this process's CPU time,
        or the worker's for a peer that runs in a process of its own."""
        c0, t0 = time.process_time(), time.perf_counter()
        self.run(epochs)
        return time.perf_counter() - t0, time.process_time() - c0


class CBackprop(Impl):
    name = "cbackprop"

    def __init__(self, w, dtype, opt, threads, X, y):
        self.net = make_network(w, dtype, n_threads=threads)
        self.opt = opt.make_cb()
        self.X, self.y, self.batch = X, y, w.batch

    def run(self, epochs):
        self.net.fit(self.X, self.y, optimizer=self.opt, epochs=epochs, batch_size=self.batch)

    def params(self):
        return [(W.copy(), b.copy()) for W, b in self.net.params]


class NumpyReference(Impl):
    """Plain NumPy backprop: the same maths as cbackprop, one array op at a time.

    θ is one flat vector (as in cbackprop), so the optimizer update is a few
    whole-vector operations. Written the way a careful NumPy user would.
    """

    name = "numpy"

    def __init__(self, w, dtype, opt, threads, X, y, params):
        self.w, self.opt, self.X = w, opt, X
        self.Y = np.eye(w.sizes[-1], dtype=dtype)[y] if w.loss == "cross_entropy" else y
        self.theta = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in params])
        self.grad = np.zeros_like(self.theta)
        self.W, self.b = self._views(self.theta)
        self.dW, self.db = self._views(self.grad)
        self.m = np.zeros_like(self.theta)
        self.v = np.zeros_like(self.theta)
        self.t = 0
        self.rng = np.random.default_rng(0)

    def _views(self, flat):
        Ws, bs, p = [], [], 0
        for n_in, n_out in zip(self.w.sizes[:-1], self.w.sizes[1:]):
            Ws.append(flat[p:p + n_in * n_out].reshape(n_in, n_out))
            bs.append(flat[p + n_in * n_out:p + n_in * n_out + n_out])
            p += n_in * n_out + n_out
        return Ws, bs

    def step(self, X, Y):
        L = len(self.W)
        acts = [X]
        for i in range(L):
            Z = acts[-1] @ self.W[i]
            Z += self.b[i]
            if i < L - 1:
                np.maximum(Z, 0, out=Z)
            acts.append(Z)
        Z, n = acts[-1], X.shape[0]
        if self.w.loss == "cross_entropy":
            Z -= Z.max(axis=1, keepdims=True)
            np.exp(Z, out=Z)
            Z /= Z.sum(axis=1, keepdims=True)
            loss = -np.log(Z[Y > 0]).sum() / n
            dZ = (Z - Y) / n
        else:
            r = Z - Y
            loss = np.mean(r * r)
            dZ = r * (2.0 / r.size)
        for i in range(L - 1, -1, -1):
            np.matmul(acts[i].T, dZ, out=self.dW[i])
            dZ.sum(axis=0, out=self.db[i])
            if i > 0:
                dA = dZ @ self.W[i].T
                dA *= acts[i] > 0
                dZ = dA
        self.update()
        return loss

    def update(self):
        g, lr = self.grad, self.opt.lr
        if self.opt.kind == "sgd":          # torch.optim.SGD, momentum 0.9
            self.m *= 0.9
            self.m += g
            self.theta -= lr * self.m
        else:                               # torch.optim.Adam
            self.t += 1
            self.m *= 0.9
            self.m += 0.1 * g
            self.v *= 0.999
            self.v += 0.001 * g * g
            denom = np.sqrt(self.v) / np.sqrt(1 - 0.999 ** self.t) + 1e-8
            self.theta -= (lr / (1 - 0.9 ** self.t)) * self.m / denom

    def params(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.W, self.b)]

    def run(self, epochs):
        B, n = self.w.batch, self.X.shape[0]
        for _ in range(epochs):
            order = self.rng.permutation(n)
            for pos in range(0, n, B):
                idx = order[pos:pos + B]
                self.step(self.X[idx], self.Y[idx])


class Torch(Impl):
    """PyTorch eager on the CPU: nn.Sequential, torch.optim, the usual loop."""

    name = "torch"

    def __init__(self, w, dtype, opt, threads, X, y, params):
        import torch
        torch.set_num_threads(threads)
        self.torch = torch
        tdtype = torch.float32 if dtype == np.float32 else torch.float64
        mods = []
        for i, (W, b) in enumerate(params):
            lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
            if i < len(params) - 1:
                mods.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*mods)
        ps = self.model.parameters()
        self.opt = (torch.optim.SGD(ps, lr=opt.lr, momentum=0.9) if opt.kind == "sgd"
                    else torch.optim.Adam(ps, lr=opt.lr))
        self.loss = (torch.nn.CrossEntropyLoss() if w.loss == "cross_entropy"
                     else torch.nn.MSELoss())
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(y)
        self.B = w.batch
        self.gen = torch.Generator().manual_seed(0)

    def run(self, epochs):
        torch, n = self.torch, self.X.shape[0]
        for _ in range(epochs):
            order = torch.randperm(n, generator=self.gen)
            for pos in range(0, n, self.B):
                idx = order[pos:pos + self.B]
                self.opt.zero_grad(set_to_none=True)
                loss = self.loss(self.model(self.X[idx]), self.y[idx])
                loss.backward()
                self.opt.step()

    def params(self):
        lins = [m for m in self.model if isinstance(m, self.torch.nn.Linear)]
        return [(lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy())
                for lin in lins]


class SklearnMLP(Impl):
    """scikit-learn's MLPClassifier / MLPRegressor, one partial_fit per epoch."""

    name = "sklearn"

    def __init__(self, w, dtype, opt, threads, X, y, params):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        cls = MLPClassifier if w.loss == "cross_entropy" else MLPRegressor
        kw = dict(hidden_layer_sizes=w.sizes[1:-1], activation="relu", alpha=0.0,
                  batch_size=w.batch, learning_rate_init=opt.lr, shuffle=True, random_state=0)
        if opt.kind == "sgd":
            kw.update(solver="sgd", momentum=0.9, nesterovs_momentum=False)
        else:
            kw.update(solver="adam")
        self.model = cls(**kw)
        self.X, self.y = X, y
        self.classes = np.arange(w.sizes[-1])
        self._partial(1)     # builds the model (not timed separately: run() warms up first)

    def _partial(self, epochs):
        for _ in range(epochs):
            if hasattr(self.model, "classes_") or not hasattr(self.model, "predict_proba"):
                self.model.partial_fit(self.X, self.y)
            else:
                self.model.partial_fit(self.X, self.y, classes=self.classes)

    def run(self, epochs):
        self._partial(epochs)


def _jax_worker(conn, w, dtype, opt, threads, X, y, params):
    """The JAX peer's process: XLA fixes its thread pool when jax is imported, so
    each thread count gets a process of its own, pinned to that many cores.
    It answers each message on conn: an epoch count with (wall, CPU) seconds
    of training that many epochs, "params" with the layers' (W, b); None ends it."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    if threads == 1:
        os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", dtype == np.float64)
    L, lr = len(params), opt.lr

    def loss_fn(ps, Xb, yb):
        a = Xb
        for i, (W, b) in enumerate(ps):
            a = a @ W + b
            if i < L - 1:
                a = jax.nn.relu(a)
        if w.loss == "cross_entropy":
            logp = jax.nn.log_softmax(a)
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))
        return jnp.mean((a - yb) ** 2)

    grad = jax.grad(loss_fn)

    def step(carry, idx):
        ps, m, v, t = carry
        g = grad(ps, Xj[idx], yj[idx])
        tree = jax.tree_util.tree_map
        if opt.kind == "sgd":                       # torch.optim.SGD, momentum 0.9
            m = tree(lambda m_, g_: 0.9 * m_ + g_, m, g)
            ps = tree(lambda p, m_: p - lr * m_, ps, m)
        else:                                       # torch.optim.Adam
            t = t + 1
            m = tree(lambda m_, g_: 0.9 * m_ + 0.1 * g_, m, g)
            v = tree(lambda v_, g_: 0.999 * v_ + 0.001 * g_ * g_, v, g)
            c1, c2 = 1 - 0.9 ** t, jnp.sqrt(1 - 0.999 ** t)
            ps = tree(lambda p, m_, v_: p - (lr / c1) * m_ / (jnp.sqrt(v_) / c2 + 1e-8),
                      ps, m, v)
        return (ps, m, v, t), None

    @jax.jit
    def epoch(carry, order):
        return jax.lax.scan(step, carry, order)[0]

    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    ps = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
    zeros = jax.tree_util.tree_map(jnp.zeros_like, ps)
    carry = (ps, zeros, zeros, jnp.asarray(0, dtype))
    rng, n = np.random.default_rng(0), X.shape[0]
    conn.send("ready")
    while (epochs := conn.recv()) is not None:
        if epochs == "params":
            conn.send([(np.asarray(W), np.asarray(b)) for W, b in carry[0]])
            continue
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(epochs):
            order = jnp.asarray(rng.permutation(n).reshape(-1, w.batch))
            carry = epoch(carry, order)
        jax.block_until_ready(carry)
        conn.send((time.perf_counter() - t0, time.process_time() - c0))


class Jax(Impl):
    """JAX on the CPU, the way a speed-minded user writes it: jax.grad of the loss,
    the optimizer by hand (as torch.optim's formulas), and a whole epoch of
    steps as one jitted lax.scan, so there is no dispatch per step."""

    name = "jax"

    def __init__(self, w, dtype, opt, threads, X, y, params):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_jax_worker, daemon=True,
                                args=(child, w, dtype, opt, threads, X, y, params))
        self.proc.start()
        if self.conn.recv() != "ready":
            raise RuntimeError("the JAX worker did not start")

    def timed_run(self, epochs):
        self.conn.send(epochs)
        return self.conn.recv()

    def run(self, epochs):
        self.timed_run(epochs)

    def params(self):
        self.conn.send("params")
        return self.conn.recv()

    def __del__(self):
        try:
            self.conn.send(None)
            self.proc.join(5)
        except (OSError, AttributeError):
            pass


PEERS = {"numpy": NumpyReference, "torch": Torch, "sklearn": SklearnMLP, "jax": Jax}
_MODULES = {"numpy": "numpy", "torch": "torch", "sklearn": "sklearn", "jax": "jax"}


def available(name: str) -> str | None:
    """None when the peer can run here, else why not."""
    if importlib.util.find_spec(_MODULES[name]) is None:
        return f"{_MODULES[name]} is not installed"
    return None


def build(name: str, w: Workload, dtype, opt: OptimizerSpec, threads: int, X, y) -> Impl:
    if name == "cbackprop":
        return CBackprop(w, dtype, opt, threads, X, y)
    params = [(W.copy(), b.copy()) for W, b in make_network(w, dtype).params]
    return PEERS[name](w, dtype, opt, threads, X, y, params)
