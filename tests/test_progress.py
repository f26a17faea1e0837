"""The per-epoch progress display of fit(verbose=True)."""

import io
import re

import numpy as np
import pytest

import cbackprop as cb
from cbackprop import progress as progress_module
from cbackprop.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def small_fit(**kwargs):
    X, y = cb.datasets.make_xor(64, seed=0)
    net = cb.Network(2, [cb.Dense(8, "tanh"), cb.Dense(2, "softmax")], seed=0)
    return net.fit(X, y, epochs=3, batch_size=16, **kwargs)


def test_verbose_fit_prints_one_line_per_epoch(capsys):
    hist = small_fit(verbose=True, validation_data=cb.datasets.make_xor(16, seed=1))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines):
        assert line.startswith(f"epoch {epoch + 1}/3")
        loss = float(re.search(r" loss (\S+)", line).group(1))
        assert loss == pytest.approx(hist["loss"][epoch], abs=1e-4)
        assert "val_accuracy" in line and "samples/s" in line
    assert "s left" in lines[0] and "left" not in lines[-1]


def test_quiet_fit_prints_nothing(capsys):
    small_fit(verbose=False)
    assert capsys.readouterr().out == ""


class Clock:
    """time.monotonic for progress, moved by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_lines_when_not_a_terminal(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    stream = io.StringIO()
    with Progress(2, 100, stream=stream) as progress:
        clock.now += 0.5
        progress.update(0, {"loss": 0.5, "time": 0.5})
        clock.now += 0.5
        progress.update(1, {"loss": 0.25, "time": 0.5})
    lines = stream.getvalue().splitlines()
    assert lines == ["epoch 1/2  loss 0.5000  200 samples/s  (0.50 s, 0.5 s left)",
                     "epoch 2/2  loss 0.2500  200 samples/s  (0.50 s)"]


def test_long_epochs_print_a_line_every_few_seconds_with_an_honest_time_left(monkeypatch):
    """Inside an epoch longer than Progress.interval, a line with the rows done; the time
    left is wall clock (here each epoch takes 10 s, of which fit's own timer saw 4)."""
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    stream = io.StringIO()
    with Progress(3, 1000, stream=stream) as progress:
        for rows in range(100, 1001, 100):        # 1 s per 100 rows
            clock.now += 1.0
            progress.chunk(0, rows, 0.5)
        progress.update(0, {"loss": 0.5, "time": 4.0})
        clock.now += 2.0
        progress.chunk(1, 200, 0.4)                 # under the interval: silent
        clock.now += 2.0
        progress.chunk(1, 400, 0.4)
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("epoch 1/3  300/1,000 rows  loss 0.5000  (3.0 s into the epoch, "
                        "27.0 s left)")
    assert len([line for line in lines if line.startswith("epoch 1/3  ")]) == 4
    assert "(4.00 s, 20.0 s left)" in lines[3]
    assert lines[4] == ("epoch 2/3  400/1,000 rows  loss 0.4000  (4.0 s into the epoch, "
                        "16.0 s left)")


def test_tqdm_bar_on_a_terminal():
    pytest.importorskip("tqdm")
    stream = Terminal()
    with Progress(4, 10, stream=stream) as progress:
        assert progress._bar is not None
        for epoch in range(4):
            progress.update(epoch, {"loss": 1.0 / (epoch + 1), "time": 0.01})
    out = stream.getvalue()
    assert "40/40" in out and "epoch 4/4  loss 0.2500" in out
    assert progress._bar is None


def test_lines_can_be_chosen_on_a_terminal_and_disabled_writes_nothing():
    stream = Terminal()
    with Progress(1, 10, verbose="lines", stream=stream) as progress:
        progress.update(0, {"loss": 1.0, "time": 0.1})
    assert stream.getvalue().startswith("epoch 1/1  loss 1.0000")
    silent = Terminal()
    with Progress(1, 10, verbose=False, stream=silent) as progress:
        progress.update(0, {"loss": 1.0, "time": 0.1})
    assert silent.getvalue() == ""


def test_bar_can_be_chosen_and_falls_back_to_lines_without_tqdm(monkeypatch):
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    with Progress(2, 10, verbose="bar", stream=stream) as progress:
        assert progress._bar is not None
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)    # import tqdm fails
    stream = Terminal()
    with Progress(2, 10, verbose="bar", stream=stream) as progress:
        progress.update(0, {"loss": 1.0, "time": 0.1})
    assert stream.getvalue().startswith("epoch 1/2  loss 1.0000")


def test_integer_verbose_counts_as_a_switch(capsys):
    small_fit(verbose=0)
    assert capsys.readouterr().out == ""
    small_fit(verbose=2)
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize("verbose", ["yes", None, 1.0, -1])
def test_fit_checks_verbose_before_training(verbose):
    X, y = cb.datasets.make_xor(16, seed=0)
    net = cb.Network(2, [cb.Dense(2, "softmax")], seed=0)
    before = net.theta.copy()
    with pytest.raises(ValueError, match="verbose must be"):
        net.fit(X, y, verbose=verbose)
    np.testing.assert_array_equal(net.theta, before)


def test_bar_is_closed_when_fit_fails(monkeypatch):
    pytest.importorskip("tqdm")
    import cbackprop._session as network_module

    bars = []

    class Recording(Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, stream=Terminal(), **kwargs)
            bars.append(self)

    monkeypatch.setattr(network_module, "Progress", Recording)
    X, y = np.array([[1e30, 1e30]] * 8), np.zeros(8)
    net = cb.Network(2, [cb.Dense(1)], loss="mse", seed=0)
    with pytest.raises(cb.DivergenceError):
        net.fit(X, y, optimizer=cb.SGD(lr=10.0), epochs=3, verbose=True)
    assert bars and bars[0]._bar is None


def test_bar_moves_inside_an_epoch_and_counts_samples_over_the_fit():
    pytest.importorskip("tqdm")
    stream = Terminal()
    with Progress(2, 10_000, stream=stream) as progress:
        progress.chunk(0, 2500, 0.9)
        assert progress._bar.n == 2500 and progress._bar.total == 20_000
        assert "epoch 1/2  loss 0.9000" in str(progress._bar.postfix)
        progress.chunk(0, 10_000, 0.8)
        progress.update(0, {"loss": 0.8, "time": 0.1})
        progress.chunk(1, 5000, 0.5)
        assert progress._bar.n == 15_000
    out = stream.getvalue()
    assert "sample/s" in out and "15.0k/20.0k" in out and "epoch 2/2  loss 0.5000" in out


def test_fit_reports_every_chunk_to_the_display(monkeypatch):
    calls = []
    monkeypatch.setattr(Progress, "chunk", lambda self, *args: calls.append(args))
    X, y = cb.datasets.make_xor(64, seed=0)
    cb.Network(2, [cb.Dense(2, "softmax")], seed=0).fit(X, y, epochs=2, batch_size=8)
    assert [(epoch, rows) for epoch, rows, _ in calls if rows == 64] == [(0, 64), (1, 64)]
    assert all(loss > 0 for _, _, loss in calls)


def test_plain_lines_ignore_chunks():
    stream = io.StringIO()
    with Progress(1, 10, stream=stream) as progress:
        progress.chunk(0, 5, 1.0)
        assert stream.getvalue() == ""
