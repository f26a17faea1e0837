"""Data sets: the embedded UCI optical digits and a seeded train/test split."""

from __future__ import annotations

from importlib import resources

import numpy as np

from cbackprop import _validation as V


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI optical recognition of handwritten digits data set.

    1797 images of 8×8 pixels with values 0..16 and their labels 0..9 (the
    set scikit-learn's `load_digits` returns), shipped inside the package.

    Returns
    -------
    X : ndarray of float64, shape (1797, 64)
    y : ndarray of int64, shape (1797,)
    """
    with resources.files("cbackprop").joinpath("data/digits.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as data:
            return data["X"].astype(np.float64), data["y"].astype(np.int64)


def train_test_split(X, y, test_size: float = 0.25, seed: int = 0):
    """Shuffle the rows with `seed` and split them: (X_train, X_test, y_train, y_test)."""
    X, y = np.asarray(X), np.asarray(y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    test_size = V.check_real(test_size, "test_size", 0, 1, low_open=True, high_open=True)
    order = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = max(1, int(round(test_size * X.shape[0])))
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]
