"""Many networks at once: K same-shape networks trained on one pass over the data.

A sweep of learning rates, several seeds, a bagged ensemble or the folds of a
cross-validation are K fits of one shape. `fit_many` trains them together:
every network sees the same batches in the same order, and their first
layers sit side by side as one wide layer, so each batch's first-layer
forward product and its ∂W are one GEMM for all K instead of K small ones
(`_core/_engine.pyx`, `Bank`). Each network keeps its own θ, optimizer,
random stream (dropout) and L2 strength, and stops on its own.

A bank is K training sessions sharing a data pass: each network's session
(`cbackprop._session`) checks and claims it, keeps its rollback point and
evaluates its validation data; the bank owns the shared order and batches.
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cbackprop import _threads, trainer
from cbackprop import _validation as V
from cbackprop._concurrency import DeferredInterrupt
from cbackprop._core import _engine, _optim
from cbackprop._session import TrainingSession, check_fit_options
from cbackprop.history import History
from cbackprop.network import Network
from cbackprop.optimizers import Optimizer
from cbackprop.progress import Progress

__all__ = ["fit_many"]


def _check_networks(networks) -> list[Network]:
    """The networks as a list, checked to share one shape (the first is the reference)."""
    if isinstance(networks, Network) or not isinstance(networks, (list, tuple)):
        raise TypeError("networks must be a list of cb.Network")
    networks = list(networks)
    if not networks:
        raise ValueError("networks is empty: give at least one cb.Network")
    for i, net in enumerate(networks):
        if not isinstance(net, Network):
            raise TypeError(f"networks[{i}] must be a cb.Network, got {type(net).__name__}")
        for j in range(i):
            if networks[j] is net:
                raise ValueError(f"networks[{i}] is networks[{j}]: each network can be "
                                 "trained once per call")
    first = networks[0]
    if len(first.layers) < 2:
        raise ValueError("fit_many needs networks with at least one hidden layer; "
                         "fit a network without one with net.fit")

    def shape_of(net):
        return {"n_inputs": net.n_inputs, "layer sizes": list(net.sizes[1:]),
                "activations": [layer.activation for layer in net.layers],
                "loss": net.loss.to_dict(), "dtype": net.dtype.name}

    reference = shape_of(first)
    for i, net in enumerate(networks[1:], start=1):
        for field, value in shape_of(net).items():
            if value != reference[field]:
                raise ValueError(
                    f"networks[{i}] has {field} {value!r}, but networks[0] has "
                    f"{reference[field]!r}: fit_many trains networks of one shape together")
    return networks


def _check_optimizers(optimizers, k: int) -> list[Optimizer]:
    """One optimizer per network: a single one is copied (its hyper-parameters,
    fresh state) for each; a list must hold k distinct optimizers of one kind."""
    if isinstance(optimizers, Optimizer):
        return [type(optimizers)(**optimizers.get_config()) for _ in range(k)]
    if not isinstance(optimizers, (list, tuple)):
        raise TypeError("optimizers must be a cb.Optimizer or a list of them, one per "
                        f"network, got {type(optimizers).__name__}")
    optimizers = list(optimizers)
    if len(optimizers) != k:
        raise ValueError(f"optimizers has {len(optimizers)} entries for {k} networks: "
                         "give one optimizer, or one per network")
    for i, opt in enumerate(optimizers):
        if not isinstance(opt, Optimizer):
            raise TypeError(f"optimizers[{i}] must be a cb.Optimizer, got {opt!r}")
        if type(opt) is not type(optimizers[0]):
            raise ValueError(f"optimizers[{i}] is a {type(opt).__name__} but optimizers[0] "
                             f"is a {type(optimizers[0]).__name__}: one kind for all (its "
                             "hyper-parameters may differ)")
        for j in range(i):
            if optimizers[j] is opt:
                raise ValueError(f"optimizers[{i}] is optimizers[{j}]: give each network "
                                 "its own optimizer (or pass a single one to copy)")
    return optimizers


def _check_bank_weights(sample_weight, k: int, n_rows: int, dtype) -> np.ndarray:
    """(k, n_rows) per-network row weights, each row finite, ≥ 0, with a positive sum."""
    w = V.as_numeric_array(sample_weight, "sample_weight")
    if w.shape != (k, n_rows):
        raise ValueError(f"sample_weight must have shape (n_samples,) = ({n_rows},) or "
                         f"(n_networks, n_samples) = ({k}, {n_rows}), got {w.shape}")
    w = np.ascontiguousarray(w, dtype=dtype)
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or infinity")
    if w.min() < 0:
        raise ValueError("sample_weight must be non-negative")
    empty = np.flatnonzero(w.sum(axis=1) <= 0)
    if empty.size:
        raise ValueError(f"sample_weight[{empty[0]}] has no positive weight: network "
                         f"{empty[0]} would train on no rows")
    return w


class _Group:
    """Members of the bank trained on one thread: the engine's Bank over their
    sessions and its buffers (the wide first layer, its optimizer state, the
    workspace)."""

    def __init__(self, members: list[int], sessions: list[TrainingSession], weights,
                 hps: list[np.ndarray], batch_size: int):
        self.members = members
        chosen = [sessions[i] for i in members]
        net = chosen[0].network
        self.d, self.m1 = net.sizes[0], net.sizes[1]
        self.n_state = _optim.N_STATE[chosen[0].optimizer.code]
        self.n_params = net.theta.size
        self.bank = _engine.Bank(
            [s.layout for s in chosen], [s.network.theta for s in chosen],
            [s.optimizer.state for s in chosen], [hps[i] for i in members],
            [s.optimizer.step_counter for s in chosen], [s.network.rng_state for s in chosen],
            chosen[0].optimizer.code)
        K, dtype = len(members), net.dtype
        self.wide = np.empty((self.d + 1) * K * self.m1, dtype)
        self.wide_grad = np.empty_like(self.wide)
        self.wide_state = np.empty(self.n_state * self.wide.size, dtype)
        self.scratch = np.empty(self.n_params, dtype)
        self.ws = np.empty(self.bank.workspace_size(batch_size), dtype)
        self.results = np.zeros((K, 3))
        self.weights = weights if weights.shape[0] <= 1 else np.ascontiguousarray(
            weights[members])
        self.sessions = chosen

    def _blocks(self, flat: np.ndarray):
        """Views (W (d, K, m₁), b (K, m₁)) of a wide layer buffer."""
        K, d, m1 = len(self.members), self.d, self.m1
        return flat[:d * K * m1].reshape(d, K, m1), flat[d * K * m1:].reshape(K, m1)

    def _pairs(self):
        """(member's first-layer slice, bank's block) of θ and of each state buffer."""
        p1 = self.d * self.m1 + self.m1
        wide = [self.wide] + [self.wide_state[i * self.wide.size:(i + 1) * self.wide.size]
                              for i in range(self.n_state)]
        for j, session in enumerate(self.sessions):
            own = [session.network.theta] + session.optimizer.state_slots()
            for mine, bank in zip(own, wide):
                W, b = self._blocks(bank)
                yield mine[:p1], W[:, j, :], b[j]

    def load(self) -> None:
        """Copy the members' first layers and their optimizer state into the bank."""
        for mine, W, b in self._pairs():
            W[...] = mine[:W.size].reshape(self.d, self.m1)
            b[...] = mine[W.size:]

    def store(self) -> None:
        """Copy the bank's first layers and optimizer state back to the members."""
        for mine, W, b in self._pairs():
            mine[:W.size] = W.reshape(-1)
            mine[W.size:] = b

    def train(self, X, Y, order, start: int, stop: int, batch_size: int) -> None:
        _engine.bank_train(self.bank, self.wide, self.wide_grad, self.wide_state, self.scratch,
                           X, Y, self.weights, order, start, stop, batch_size, self.ws,
                           self.results)


def fit_many(networks, X, y, optimizers, epochs: int = 1, batch_size: int = 32,
             sample_weight=None, validation_data=None, shuffle: bool = True,
             seed: int | None = None, n_threads: int | None = None, verbose=False,
             callbacks=None, alpha_per_weight=None, health: bool = False,
             checkpoint=None) -> list[History]:
    """Train K networks of one shape together, on one pass over the data.

    Every network sees the same batches in the same order; the first layers
    of all K run as one wide layer (one GEMM each way per batch for all K),
    the deeper layers and the updates network by network, inside the same
    nogil call. Each network is trained as `net.fit` would train it alone,
    with its own θ, optimizer, dropout stream and alpha; the results equal
    separate fits to rounding (bitwise for one network: the BLAS rounds a
    wide product's columns differently from a narrow one's).

    Parameters
    ----------
    networks : list of Network
        Same n_inputs, layer sizes, activations, loss and dtype, at least one
        hidden layer; distinct objects.
    X, y : the training data, as for `Network.fit`
    optimizers : Optimizer or list of Optimizer
        One per network (one kind, e.g. all cb.Adam, with their own
        hyper-parameters; their state carries over as in fit), or a single
        one whose hyper-parameters each network gets a fresh copy of.
    epochs : int, default 1
    batch_size : int, default 32
    sample_weight : array-like (n_samples,) or (n_networks, n_samples), optional
        Per-row weights, shared or one row per network (zeros leave a row out
        of that network's training: bagging, cross-validation folds). A
        network whose batch weighs nothing skips that batch.
    validation_data : (X_val, y_val), optional
        Evaluated for every network after each epoch ("val_loss", …).
    shuffle : bool, default True
        Reshuffle the shared row order every epoch, from `seed`.
    seed : int, optional
        Fixes the shared row order (each network's own seed fixes its dropout).
    n_threads : int, optional
        Threads to use (default: the BLAS's setting, at most the cores). With
        two or more, the networks are split between threads, each running its
        own bank with a one-thread BLAS.
    verbose : bool or {"bar", "lines"}, default False
        One line per epoch: networks still training, best and mean loss.
    callbacks : list of callables, optional
        Each is called as callback(epoch, logs) for every network still
        training after every epoch, with logs["network"] its index; a True
        return stops that network alone. `net.stop()` does the same from
        another thread; Ctrl-C stops them all at the next chunk.
    health, checkpoint
        Not measured, not written by a bank (refused with a ValueError that
        says so): the wide first layer of all K networks is updated as one.
        Fit a network alone (`net.fit(..., health=True, checkpoint=PATH)`)
        for either.
    alpha_per_weight : float or list of float, optional
        One per network (or one for all): each training batch of total row
        weight S then uses the L2 strength alpha_per_weight / S instead of the
        network's alpha (scikit-learn's alpha/(2S)·‖W‖² per batch, as
        `Layout.alpha_per_weight`); the validation figures keep net.alpha.

    Returns
    -------
    list of History
        One per network, in order. A network that stopped early has fewer
        epochs; `History.stop_reason` says why ("callback", "stop",
        "diverged"), None when it ran every epoch.

    A network whose loss or parameters become non-finite is restored to its
    state before this call and drops out (a RuntimeWarning names it); the
    others go on.
    """
    if V.check_bool(health, "health"):
        raise ValueError("fit_many measures no health figures: the first layers of all "
                         "networks are one wide layer, updated as one; fit a network alone "
                         "with net.fit(..., health=True) to see its figures")
    if checkpoint is not None:
        raise ValueError("fit_many writes no checkpoints: the networks share one row order "
                         "and wide first layer; fit each with net.fit(..., checkpoint=PATH), "
                         "or save them between fit_many calls of fewer epochs")
    networks = _check_networks(networks)
    k, first = len(networks), networks[0]
    optimizers = _check_optimizers(optimizers, k)
    epochs, callbacks = check_fit_options(epochs, verbose, callbacks)
    shuffle = V.check_bool(shuffle, "shuffle")
    threads = _threads.most_threads(V.check_int(n_threads, "n_threads", 1)
                                    if n_threads is not None else None)
    order_rng = np.random.SeedSequence(
        None if seed is None else V.check_int(seed, "seed", 0)).generate_state(1, np.uint64)
    per_network = sample_weight is not None and np.ndim(sample_weight) == 2
    # The data are checked once, by the first network's session; the others get
    # its checked arrays.
    lead = TrainingSession(first, X, y, None if per_network else sample_weight,
                           optimizer=optimizers[0], batch_size=batch_size, shuffle=False,
                           validation_data=validation_data)
    if lead.sparse:
        raise TypeError("fit_many takes dense X only: pass X.toarray(), or fit networks "
                        "on sparse input one by one with net.fit")
    X, Y, n = lead.X, lead.Y, lead.n_rows
    sessions = [lead] + [
        TrainingSession(net, X, Y, lead.w if lead.w.size else None, optimizer=opt,
                        batch_size=batch_size, shuffle=False, validation_data=validation_data)
        for net, opt in zip(networks[1:], optimizers[1:])]
    if alpha_per_weight is not None:
        per_weight = (list(alpha_per_weight) if isinstance(alpha_per_weight, (list, tuple))
                      else [alpha_per_weight] * k)
        if len(per_weight) != k:
            raise ValueError(f"alpha_per_weight has {len(per_weight)} entries for {k} "
                             "networks: give one value, or one per network")
        for i, (session, value) in enumerate(zip(sessions, per_weight)):
            session.layout.alpha_per_weight = V.check_real(value, f"alpha_per_weight[{i}]", 0)
    if per_network:
        weights = _check_bank_weights(sample_weight, k, n, first.dtype)
    else:
        weights = (lead.w[None, :] if lead.w.size else np.empty((0, n), first.dtype))
    histories = [History() for _ in networks]

    def diverged(i, error, epoch):
        warnings.warn(f"network {i}: {error} at epoch {epoch}; the others went on",
                      RuntimeWarning, stacklevel=6)   # at the user's call

    train_bank(sessions, histories, X, Y, weights, epochs, [], shuffle=shuffle,
               order_rng=order_rng, threads=threads, verbose=verbose, callbacks=callbacks,
               on_divergence=diverged)
    return histories


class Bank:
    """The trainer's backend for K sessions sharing one data pass
    (`cbackprop.trainer`): fit_many, and the estimators of a banked search.
    The bank owns the shared row order and the groups of members trained per
    thread; each member's session keeps its rollback point and evaluates its
    validation data. A diverged member is restored to its last commit and
    drops out (`on_divergence(member, error)` is told); the others go on.

    The row order is shuffled each epoch from `order_rng` (fit_many's seed),
    or, without one, from the rows' own order by each member's random stream
    (the estimators' rule: their streams are equal, one random_state)."""

    def __init__(self, sessions, histories, X, Y, weights, shuffle: bool, order_rng,
                 threads: int, interrupt, pool, on_divergence):
        self.sessions, self.histories = sessions, histories
        self.X, self.Y, self.weights = X, Y, weights
        self.shuffle, self.order_rng, self.threads = shuffle, order_rng, threads
        self.interrupt, self.pool, self.on_divergence = interrupt, pool, on_divergence
        self.batch_size, self.n_rows = sessions[0].batch_size, sessions[0].n_rows
        self.hps = [s.optimizer.hyperparameters() for s in sessions]
        self.active = list(range(len(sessions)))
        self.order = np.arange(self.n_rows, dtype=np.intp)
        self.groups, self.grouped, self.blas = [], None, None
        self.locks = []
        self.partial = False
        self.epoch = -1

    @property
    def stopped(self) -> bool:
        return self.interrupt.pending

    def chunk_rows(self, rows: int) -> int:
        return rows

    def observe(self, seconds: float, rows: int) -> None:
        pass

    def chunk_done(self, progress, epoch: int, pos: int) -> None:
        pass

    def member_stopped(self, i: int) -> bool:
        return self.sessions[i].stop_requested

    def retire(self, i: int) -> None:
        self.active.remove(i)

    def begin_epoch(self) -> int:
        """Regroup the members still training, shuffle the shared order, and
        load the members' first layers and optimizer state into the banks."""
        sessions, B = self.sessions, self.batch_size
        self.epoch += 1
        for i in self.active:        # callbacks may have changed a learning rate
            self.hps[i][...] = sessions[i].optimizer.hyperparameters()
        if self.grouped != self.active:
            # The members split between threads, each group a bank of its own.
            parts = max(1, min(self.threads, len(self.active)))
            self.groups = [_Group(part.tolist(), sessions, self.weights, self.hps, B)
                           for part in np.array_split(np.array(self.active), parts)]
            self.grouped = list(self.active)
            net = sessions[0].network
            self.blas = _threads.BlasThreads(
                1 if parts > 1 else _threads.threads_for_shape(
                    [net.sizes[0], len(self.active) * net.sizes[1]], B, self.threads,
                    net.dtype))
        if self.shuffle and self.order_rng is not None:
            _engine.shuffle(self.order, self.order_rng)
        elif self.shuffle:
            for k, i in enumerate(self.active):
                order = np.arange(self.n_rows, dtype=np.intp)
                _engine.shuffle(order, sessions[i].network.rng_state)
                if k == 0:
                    self.order[...] = order
                elif not np.array_equal(order, self.order):
                    raise RuntimeError("the members' random streams gave different row "
                                       "orders: train them one by one")
        self.locks = [sessions[i].network.params_lock.write() for i in self.active]
        for lock in self.locks:
            lock.__enter__()
        for group in self.groups:
            group.results[...] = 0
            group.load()
        self.blas.__enter__()
        return 0

    def train_chunk(self, pos: int, stop: int) -> int:
        X, Y, order, B = self.X, self.Y, self.order, self.batch_size
        if len(self.groups) == 1:
            self.groups[0].train(X, Y, order, pos, stop, B)
        else:
            list(self.pool.map(lambda g: g.train(X, Y, order, pos, stop, B), self.groups))
        for group in self.groups:        # net.stop(): that network alone
            for j, i in enumerate(group.members):
                if self.sessions[i].stop_requested:
                    group.bank.retire(j)
        return stop - pos

    def close_epoch(self) -> None:
        """Copy the banks back to the members and let readers in again."""
        if not self.locks:
            return
        self.blas.__exit__(None, None, None)
        for group in self.groups:
            group.store()
        for lock in self.locks:
            lock.__exit__(None, None, None)
        self.locks = []

    def end_epoch(self, pos: int, start: float) -> list[tuple[int, dict]]:
        """[(member, logs)] of the members that trained this epoch; a member
        that diverged is restored to its last commit and drops out."""
        self.close_epoch()
        seconds = time.perf_counter() - start
        results = []
        for group in self.groups:
            for j, i in enumerate(group.members):
                if i not in self.active:
                    continue
                session = self.sessions[i]
                what = ("the loss" if group.bank.failed(j)
                        else None if V.all_finite(session.network.theta)
                        else "the parameters")
                if what is not None:
                    self.histories[i].stop_reason = "diverged"
                    self.active.remove(i)
                    self.on_divergence(i, session.rollback(what), self.epoch)
                    continue
                loss_sum, rows, right = group.results[j]
                if rows == 0:
                    continue
                results.append((i, {**session.epoch_logs(loss_sum, right, rows),
                                    "time": seconds}))
        return results


def train_bank(sessions, histories, X, Y, weights, epochs: int, policies, *, shuffle: bool,
               order_rng, threads: int, verbose, callbacks, on_divergence) -> None:
    """Train the members' sessions (checked, on the same X, Y; weights as
    `_check_bank_weights` gives them) as one bank with the trainer: claimed
    for the fit, the policies first, then callbacks and progress."""
    claimed = []
    try:
        for session in sessions:
            session.claim()
            claimed.append(session)
        with DeferredInterrupt() as interrupt, \
                Progress(epochs, sessions[0].n_rows, verbose) as progress, \
                ThreadPoolExecutor(max_workers=max(1, min(threads, len(sessions)))) as pool:
            bank = Bank(sessions, histories, X, Y, weights, shuffle, order_rng, threads,
                        interrupt, pool, on_divergence)
            chosen = list(policies)
            if callbacks:
                chosen.append(trainer.CallbackPolicy(callbacks, numbered=True))
            chosen.append(trainer.ProgressPolicy(progress, bank, bank=True))
            try:
                trainer.train(bank, histories, epochs, chosen, progress)
            finally:
                bank.close_epoch()
    finally:
        for session in claimed:
            session.release()
