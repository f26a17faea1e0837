"""History (fit's record) and History.plot."""

import builtins

import numpy as np
import pytest

import cbackprop as cb
from cbackprop.history import History


@pytest.fixture(scope="module")
def fitted():
    X, y = cb.datasets.make_spirals(200, seed=0)
    net = cb.Network(2, [cb.Dense(16, "tanh"), cb.Dense(3, "softmax")], seed=0)
    hist = net.fit(X, y, optimizer=cb.Adam(lr=0.01), epochs=5, batch_size=16,
                   validation_data=(X[:50], y[:50]))
    return hist


def test_fit_records_each_epoch(fitted):
    assert len(fitted) == 5 and fitted.epoch == [0, 1, 2, 3, 4]
    assert set(fitted.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    assert all(len(v) == 5 for v in fitted.history.values())
    assert fitted["loss"] is fitted.history["loss"]
    assert fitted["loss"][-1] < fitted["loss"][0]
    assert "epochs=5" in repr(fitted)


def test_history_is_exported_from_the_package():
    assert cb.History is History
    from cbackprop.network import History as from_network
    assert from_network is History


def test_plot_writes_a_png_with_labelled_axes(fitted, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    fig = fitted.plot(path, title="spirals")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    for ax in axes:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["training", "validation"]
        np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(axes[0].get_lines()[0].get_ydata(), fitted["loss"])


def test_plot_without_path_returns_the_figure_and_writes_nothing(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    hist = History()
    hist.record(0, {"loss": 0.5, "time": 0.1})
    hist.record(1, {"loss": 0.25, "time": 0.1})
    fig = hist.plot()
    assert len(fig.get_axes()) == 1 and list(tmp_path.iterdir()) == []


def test_plot_of_nothing_raises():
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="nothing to plot"):
        History().plot()


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    hist = History()
    hist.record(0, {"loss": 1.0})
    with pytest.raises(ImportError, match=r"cbackprop\[plot\]"):
        hist.plot()


def test_loss_axis_is_labelled_down_to_the_final_values():
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    history = cb.History()
    for epoch, loss in enumerate(np.geomspace(2.3, 0.013, 12)):
        history.record(epoch, {"loss": loss, "val_loss": loss * 1.2, "time": 0.1})
    fig = history.plot()
    FigureCanvasAgg(fig).draw()
    ax = fig.get_axes()[0]
    low, high = ax.get_ylim()
    shown = {float(t.get_text()) for minor in (False, True)
             for t in ax.get_yticklabels(minor=minor)
             if t.get_text() and low <= float(t.get_text()) <= high}
    assert {0.01, 0.02, 0.05} <= shown         # the final 0.013 can be read off
    assert low <= 0.013
