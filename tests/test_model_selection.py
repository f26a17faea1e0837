"""cbackprop.GridSearchCV / RandomizedSearchCV: scikit-learn's results, banks underneath."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from scipy.stats import loguniform  # noqa: E402
from sklearn import model_selection as ms  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import cbackprop as cb  # noqa: E402
from cbackprop import model_selection  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16, y[:600]


@pytest.fixture
def bank_calls(monkeypatch):
    """Counts the networks trained by each bank of the bank path."""
    sizes = []
    real = model_selection.train_bank

    def counting(sessions, *args, **kwargs):
        sizes.append(len(sessions))
        return real(sessions, *args, **kwargs)

    monkeypatch.setattr(model_selection, "train_bank", counting)
    return sizes


def _same_results(ours, theirs):
    assert sorted(ours.cv_results_) == sorted(theirs.cv_results_)
    for key, value in theirs.cv_results_.items():
        if key.endswith("_time"):
            continue
        if key.startswith(("split", "mean_", "std_")):   # scores: to rounding
            np.testing.assert_allclose(np.asarray(ours.cv_results_[key], float),
                                       np.asarray(value, float), rtol=0, atol=1e-9,
                                       err_msg=key)
        else:
            assert list(ours.cv_results_[key]) == list(value), key
    assert ours.best_index_ == theirs.best_index_
    assert ours.best_params_ == theirs.best_params_


def _quiet(search, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # ConvergenceWarning of the short fits
        return search.fit(X, y, **params)


@pytest.mark.parametrize("solver, extra", [
    ("adam", {}),
    ("sgd", {"learning_rate": "adaptive", "momentum": 0.8}),
    ("adam", {"early_stopping": True, "n_iter_no_change": 2}),
])
def test_grid_scores_equal_sklearn_search(digits, bank_calls, solver, extra):
    X, y = digits
    est = cb.MLPClassifier(hidden_layer_sizes=(16,), solver=solver, max_iter=8, **extra)
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2], "random_state": [0, 1]}
    ours = _quiet(cb.GridSearchCV(est, grid, cv=3, return_train_score=True), X, y)
    theirs = _quiet(ms.GridSearchCV(est, grid, cv=3, return_train_score=True), X, y)
    _same_results(ours, theirs)
    assert max(bank_calls) == 4         # 2 alpha × 2 lr per seed and split
    np.testing.assert_array_equal(ours.best_estimator_.predict(X),
                                  theirs.best_estimator_.predict(X))
    assert type(ours.best_estimator_) is cb.MLPClassifier


def test_randomized_scores_equal_sklearn_search(digits, bank_calls):
    X, y = digits
    est = cb.MLPClassifier(hidden_layer_sizes=(16,), max_iter=6, random_state=3)
    dist = {"alpha": loguniform(1e-5, 1e-1), "learning_rate_init": loguniform(1e-4, 1e-1)}
    ours = _quiet(cb.RandomizedSearchCV(est, dist, n_iter=5, cv=3, random_state=0), X, y)
    theirs = _quiet(ms.RandomizedSearchCV(est, dist, n_iter=5, cv=3, random_state=0), X, y)
    _same_results(ours, theirs)
    assert max(bank_calls) == 5


def test_regressor_with_sample_weight_and_multimetric(digits, bank_calls):
    X, y = digits
    target = y.astype(float) + X[:, 10]
    w = np.linspace(0.5, 2.0, len(target))
    est = cb.MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", max_iter=5, random_state=0,
                          learning_rate_init=1e-3, shuffle=False)
    grid = {"alpha": [1e-4, 1.0], "momentum": [0.0, 0.9], "random_state": [0, 1]}
    scoring = {"r2": "r2", "mse": "neg_mean_squared_error"}
    ours = _quiet(cb.GridSearchCV(est, grid, cv=3, scoring=scoring, refit="r2"), X, target,
                  sample_weight=w)
    theirs = _quiet(ms.GridSearchCV(est, grid, cv=3, scoring=scoring, refit="r2"), X, target,
                    sample_weight=w)
    _same_results(ours, theirs)
    assert sorted(ours.scorer_) == sorted(theirs.scorer_) == ["mse", "r2"]
    assert max(bank_calls) == 8         # shuffle=False: the seeds share one order


def test_lbfgs_and_mixed_grids_fall_back(digits, bank_calls):
    X, y = digits
    est = cb.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    grid = [{"solver": ["lbfgs"], "alpha": [1e-4, 1e-2]},
            {"solver": ["adam"], "alpha": [1e-4, 1e-2]},
            {"solver": ["sgd"], "alpha": [1e-3]}]
    ours = _quiet(cb.GridSearchCV(est, grid, cv=2), X, y)
    theirs = _quiet(ms.GridSearchCV(est, grid, cv=2), X, y)
    _same_results(ours, theirs)
    assert bank_calls and max(bank_calls) == 2      # only the two adam candidates share banks


def test_not_bankable_searches_are_sklearns(digits, bank_calls):
    from sklearn.linear_model import LogisticRegression
    X, y = digits
    ours = _quiet(cb.GridSearchCV(LogisticRegression(max_iter=50), {"C": [0.1, 1.0]}, cv=2),
                  X, y)
    theirs = _quiet(ms.GridSearchCV(LogisticRegression(max_iter=50), {"C": [0.1, 1.0]}, cv=2),
                    X, y)
    _same_results(ours, theirs)
    assert bank_calls == []


def test_bad_parameter_raises_as_sklearn(digits):
    X, y = digits
    est = cb.MLPClassifier(max_iter=2)
    with pytest.raises(ValueError, match="Invalid parameter 'no_such'"):
        cb.GridSearchCV(est, {"no_such": [1, 2]}, cv=2).fit(X, y)
    # An invalid value fails the fit: error_score as scikit-learn's.
    grid = {"alpha": [-1.0, 1e-4], "random_state": [0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = cb.GridSearchCV(est, grid, cv=2, error_score=np.nan).fit(X, y)
    assert np.isnan(ours.cv_results_["mean_test_score"][0])
    assert np.isfinite(ours.cv_results_["mean_test_score"][1])
    with pytest.raises(ValueError, match="alpha"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cb.GridSearchCV(est, grid, cv=2, error_score="raise").fit(X, y)


def test_a_diverging_bank_member_is_refitted_alone(digits):
    X, y = digits
    est = cb.MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", max_iter=4, random_state=0,
                           momentum=0.0)
    grid = {"learning_rate_init": [1e-2, 1e12]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = cb.GridSearchCV(est, grid, cv=2, error_score=-1.0).fit(X * 1e3, y)
        theirs = ms.GridSearchCV(est, grid, cv=2, error_score=-1.0).fit(X * 1e3, y)
    _same_results(ours, theirs)


def test_fit_bank_leaves_each_estimator_as_its_fit(digits):
    X, y = digits
    base = cb.MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0,
                            early_stopping=True)
    members = [base.__class__(**{**base.get_params(), "alpha": a}) for a in (1e-4, 1e-1)]
    singles = [base.__class__(**m.get_params()) for m in members]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert model_selection.fit_bank(members, X, y) == [None, None]
        for single in singles:
            single.fit(X, y)
    for banked, single in zip(members, singles):
        assert banked.n_iter_ == single.n_iter_
        np.testing.assert_allclose(banked.coefs_[0], single.coefs_[0], rtol=0, atol=1e-12)
        assert banked.validation_scores_ == single.validation_scores_
    with pytest.raises(ValueError, match="bank_key"):
        model_selection.fit_bank([cb.MLPClassifier(solver="lbfgs")], X, y)


def test_a_search_over_estimators_with_health_fits_them_one_by_one(digits):
    """A bank measures no health: estimators with health=True are fitted on
    their own (bank_key None), so every candidate gets its health_."""
    X, y = digits
    est = cb.MLPClassifier((8,), max_iter=2, batch_size=16, random_state=0, health=True)
    assert est.bank_key() is None
    search = cb.GridSearchCV(est, {"alpha": [1e-4, 1e-2]}, cv=2).fit(X[:200], y[:200])
    assert len(search.best_estimator_.health_) == 2 * 2
