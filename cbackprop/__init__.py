"""cbackprop: dense neural networks trained by backpropagation, in typed Cython.

    import cbackprop as cb
    net = cb.Network(n_inputs=64, layers=[cb.Dense(32, "relu"), cb.Dense(10, "softmax")],
                     loss="cross_entropy", seed=0)
    net.fit(X, y, optimizer=cb.SGD(lr=0.1, momentum=0.9), epochs=20)

`cb.MLPClassifier` and `cb.MLPRegressor` (scikit-learn estimators) and
`cb.GridSearchCV` and `cb.RandomizedSearchCV` (searches that train compatible
candidates as one bank) load on first use, so `import cbackprop` does not
import scikit-learn. `cb.playground(...)` (a local page that shows backpropagation
on this engine; extra `[playground]`) loads on first use too.
"""

import importlib

try:
    from cbackprop._core import _engine  # noqa: F401  (the compiled core)
except ImportError as exc:  # pragma: no cover - depends on how it was installed
    raise ImportError(
        "cbackprop's compiled extensions are missing. Build them with `pip install -e .` "
        "(or `python setup.py build_ext --inplace`) in the source tree, or run Python "
        "from another directory after `pip install .`"
    ) from exc

from cbackprop import datasets
from cbackprop._providers import set_blas
from cbackprop._version import __version__  # noqa: F401
from cbackprop.checkpoint import Checkpoint, resume
from cbackprop.gradcheck import gradcheck
from cbackprop.history import History
from cbackprop.layers import Dense
from cbackprop.losses import MSE, BinaryCrossEntropy, CrossEntropy, Huber, Loss, Poisson
from cbackprop.many import fit_many
from cbackprop.network import DivergenceError, LayerTrace, Network, load
from cbackprop.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = [
    "Network", "Dense", "History", "LayerTrace", "DivergenceError",
    "SGD", "Adam", "AdamW", "RMSprop", "Optimizer",
    "Loss", "CrossEntropy", "BinaryCrossEntropy", "MSE", "Huber", "Poisson",
    "gradcheck", "load", "resume", "Checkpoint", "datasets", "fit_many", "set_blas",
    "MLPClassifier", "MLPRegressor",    # lazy: see __getattr__
    "GridSearchCV", "RandomizedSearchCV",
    "playground",                       # lazy: Starlette and uvicorn
]

_ESTIMATORS = ("MLPClassifier", "MLPRegressor")
_SEARCHES = ("GridSearchCV", "RandomizedSearchCV")


def __getattr__(name):
    # Lazy: importing the estimators imports scikit-learn (slow, and optional).
    if name in _ESTIMATORS:
        from cbackprop import estimators
        return getattr(estimators, name)
    if name in _SEARCHES:
        from cbackprop import model_selection
        return getattr(model_selection, name)
    if name == "playground":
        # The subpackage is callable (it calls its `playground` function), so
        # cb.playground(...) works before and after `import cbackprop.playground`.
        # (import_module, not `from cbackprop import …`, which would call back in here)
        return importlib.import_module("cbackprop.playground")
    raise AttributeError(f"module 'cbackprop' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_ESTIMATORS) + list(_SEARCHES) + ["playground"])
