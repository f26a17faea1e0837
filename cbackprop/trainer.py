"""The trainer: the one chunk/epoch loop of every way of training.

    for each epoch:    policies' epoch_start -> backend.begin_epoch
      for each chunk:  backend.train_chunk (one nogil engine call, ~0.1 s)
      backend.end_epoch -> per member: History.record, policies' epoch_end

The loop is written once, here. What differs between ways of training is a
*backend*, what differs between users is a *policy*:

- backends: one network (`cbackprop._session.TrainingSession`: the engine's
  fused step, or with a reducer gradient -> reduce -> the optimizer's step,
  which is MPI's data-parallel training) and a bank of K networks on one data
  pass (`cbackprop.many.Bank`);
- policies (this module): progress, health figures, callbacks, checkpoints;
  the estimators add scikit-learn's schedule and stopping
  (`cbackprop.estimators`).

A backend trains *members* (one, or K), numbered from 0; each has a History.
It answers, besides its training: `batch_size`, `n_rows`, `active` (members
still training), `stopped` (end the epoch at the next chunk: stop() or
Ctrl-C), `chunk_rows(rows)` and `observe(seconds, rows)` (thread choice),
`chunk_done(progress, epoch, rows)` (a live display), `member_stopped(i)`,
`retire(i)`, `end_epoch(rows, start) -> [(i, logs)] or None`
(None: nothing to record) and `partial` (the epoch ended part-way, where a
checkpoint resumes).
"""

from __future__ import annotations

import time

from cbackprop.history import History

#: Seconds of work between two returns to Python during fit (signals, stop()).
CHUNK_SECONDS = 0.1


class Policy:
    """What a fit does between epochs, the same way on every backend."""

    def epoch_start(self, epoch: int, members: list[int]) -> None:
        """Before the epoch's first chunk, with the members still training."""

    def epoch_end(self, member: int, epoch: int, logs: dict) -> bool:
        """After member's epoch was recorded; logs may be extended for the
        policies after this one. True stops that member."""
        return False

    def epochs_end(self, epoch: int, results: list) -> None:
        """After every member's epoch_end, with [(member, logs)]."""

    def end(self) -> None:
        """When the fit ends finished, stopped or interrupted (not on an error)."""


def train(backend, histories: list[History], epochs: int, policies: list[Policy],
          progress, record_partial: bool = True) -> None:
    """Train backend's members until `epochs` epochs are recorded (each from
    its own History's length), they stop, or the backend is stopped.

    record_partial: an epoch ended part-way (stop(), Ctrl-C) is recorded;
    False when a checkpoint resumes inside it instead.
    """
    B, n = backend.batch_size, backend.n_rows
    rows_per_chunk = B
    for epoch in range(len(histories[0].epoch), epochs):
        if not backend.active:
            break
        for policy in policies:
            policy.epoch_start(epoch, backend.active)
        start = time.perf_counter()
        pos = backend.begin_epoch()
        while pos < n and not backend.stopped:
            stop = min(n, pos + backend.chunk_rows(rows_per_chunk))
            t0 = time.perf_counter()
            done = backend.train_chunk(pos, stop)
            elapsed = time.perf_counter() - t0
            backend.observe(elapsed, done)
            # Aim each chunk at about CHUNK_SECONDS of work, in whole batches.
            scale = CHUNK_SECONDS / max(elapsed, 1e-6)
            rows_per_chunk = int(min(max(done * scale, B), 1 << 40)) // B * B
            pos += done
            backend.chunk_done(progress, epoch, pos)
        results = backend.end_epoch(pos, start)
        if results is None or (backend.partial and not record_partial):
            break
        for member, logs in results:
            histories[member].record(epoch, logs)
            stop = backend.member_stopped(member)
            for policy in policies:
                stop |= bool(policy.epoch_end(member, epoch, logs))
            if stop:
                histories[member].stop_reason = ("stop" if backend.member_stopped(member)
                                                  else "callback")
                backend.retire(member)
        for policy in policies:
            policy.epochs_end(epoch, results)
        if backend.stopped:
            break
    for policy in policies:
        policy.end()


class ProgressPolicy(Policy):
    """Each epoch's figures on the progress display: one member's own, or a
    bank's summary (members still training, best and mean loss)."""

    def __init__(self, progress, backend, bank: bool):
        self.progress, self.backend, self.bank = progress, backend, bank

    def epoch_end(self, member, epoch, logs):
        if not self.bank:
            self.progress.update(epoch, logs)
        return False

    def epochs_end(self, epoch, results):
        if self.bank and results:
            losses = [logs["loss"] for _, logs in results]
            self.progress.update(epoch, {
                "networks": len(self.backend.active), "best_loss": min(losses),
                "mean_loss": sum(losses) / len(losses), "time": results[0][1]["time"]})


class HealthPolicy(Policy):
    """Each epoch's health records (`TrainingSession.health_records`) into the
    History and into logs["health"], for the callbacks after it."""

    def __init__(self, sessions, histories):
        self.sessions, self.histories = sessions, histories

    def epoch_end(self, member, epoch, logs):
        records = self.sessions[member].health_records(epoch)
        self.histories[member].record_health(records)
        logs["health"] = records
        return False


class CallbackPolicy(Policy):
    """callback(epoch, logs) for each member after each epoch (with
    logs["network"] = its index when `numbered`); a True return stops it."""

    def __init__(self, callbacks, numbered: bool):
        self.callbacks, self.numbered = callbacks, numbered

    def epoch_end(self, member, epoch, logs):
        shown = {**logs, "network": member} if self.numbered else logs
        stop = False
        for cb in self.callbacks:
            stop |= bool(cb(epoch, shown))
        return stop


class CheckpointPolicy(Policy):
    """The run written to `path` every `every` epochs and when the fit ends
    (finished, stopped or interrupted: as of the last finished chunk), with
    the caller's metadata (a JSON object, or a function returning one)."""

    def __init__(self, session, history, path, every: int, epochs: int, metadata):
        self.session, self.history, self.path = session, history, path
        self.every, self.epochs, self.metadata = every, epochs, metadata

    def _write(self):
        # metadata: a JSON object, or a function giving the caller's state as it is now
        metadata = self.metadata() if callable(self.metadata) else self.metadata
        self.session.write_checkpoint(self.path, self.history, self.epochs, self.every,
                                      metadata)

    def epoch_end(self, member, epoch, logs):
        if (epoch + 1) % self.every == 0:
            self._write()
        return False

    def end(self):
        self._write()
