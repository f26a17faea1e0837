"""The benchmark's peers (bench/_peers.py) train what cbackprop trains.

bench/run.py's ratios mean something only if every peer does the same work:
the same loss and gradient scaling, the same optimizer formulas. With one
batch per epoch every peer's shuffle orders the same rows, so after a few
epochs in float64 each peer's θ must equal cbackprop's to rounding.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

# Appended, not prepended: the installed packages keep precedence over the
# benchmark scripts' module names.
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))
import _peers  # noqa: E402

WORKLOADS = [_peers.Workload("ce", (12, 8, 5), 16, "cross_entropy", 1),
             _peers.Workload("mse", (6, 7, 5, 3), 16, "mse", 1)]


@pytest.mark.parametrize("w", WORKLOADS, ids=lambda w: w.name)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("peer", ["numpy", "torch", "jax"])
def test_each_peer_takes_cbackprops_steps(peer, kind, w):
    why = _peers.available(peer)
    if why:
        pytest.skip(why)
    X, y = _peers.make_data(w, np.float64)
    opt = _peers.OptimizerSpec(kind, 0.05)
    ours = _peers.build("cbackprop", w, np.float64, opt, 1, X, y)
    theirs = _peers.build(peer, w, np.float64, opt, 1, X, y)
    start = ours.params()
    ours.run(4)
    theirs.run(4)
    for (W0, _), (W, b), (Wp, bp) in zip(start, ours.params(), theirs.params()):
        assert not np.allclose(W, W0)           # the steps moved θ
        np.testing.assert_allclose(Wp, W, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(bp, b, rtol=1e-9, atol=1e-12)
