"""Hyper-parameter search that trains compatible candidates as one bank of networks.

`GridSearchCV` and `RandomizedSearchCV` are scikit-learn's, with the same
parameters, `cv_results_`, `best_*` attributes and refit. Over a cbackprop
`MLPClassifier` or `MLPRegressor`, the candidates of one split whose
`bank_key()` is equal (the same layer shapes, solver kind, batch size, and
random_state where it fixes the row order) are trained together by
`fit_bank` (the trainer's bank, as `cbackprop.fit_many`: one wide first layer);
each ends fitted as its own fit would leave it, so the scores are those of
scikit-learn's search to rounding. The other candidates ('lbfgs', lone keys,
a fit the bank could not do) are fitted and scored by scikit-learn's own
`_fit_and_score`, and so is everything when the estimator, the data (sparse
X), the fit parameters (other than sample_weight) or metadata routing are
outside what a bank trains: then the search is scikit-learn's.

Each job of the `n_jobs` pool is one bank (all its candidates on one split)
or one lone fit. A banked candidate's `fit_time` is its bank's time divided
by the bank's size.
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict

import numpy as np

# scikit-learn's private names this module still uses, each for one reason:
# a banked search must score, time, report and fail exactly as
# BaseSearchCV.fit does, and these are how it does so. Tested against the
# oldest scikit-learn the package declares and the newest (`.ci/run`).
#   _fit_context                        the decorator BaseSearchCV.fit carries
#   _fit_and_score                      a lone candidate, or a bank's failed one
#   _score, _insert_error_scores,
#   _warn_or_raise_about_fit_failures   scoring and fit-failure rules of a bank
#   _check_multimetric_scoring,
#   _MultimetricScorer                  scorer_ as BaseSearchCV sets it
#   _safe_split                         the split of X (and a precomputed kernel)
#   _check_method_params, _num_samples  fit and score parameters per split
# and BaseSearchCV's own methods: _get_scorers, _get_routed_params_for_fit,
# _check_input_parameters (from 1.7), _format_results, _select_best_index,
# _check_refit_for_multimetric.
try:
    import sklearn
    from sklearn import model_selection as sklearn_model_selection
    from sklearn.base import _fit_context, clone, is_classifier
    from sklearn.metrics._scorer import _check_multimetric_scoring, _MultimetricScorer
    from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv
    from sklearn.model_selection._validation import (
        _fit_and_score,
        _insert_error_scores,
        _score,
        _warn_or_raise_about_fit_failures,
    )
    from sklearn.utils.metaestimators import _safe_split
    from sklearn.utils.parallel import Parallel, delayed
    from sklearn.utils.validation import _check_method_params, _num_samples, indexable
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "cbackprop.GridSearchCV and cbackprop.RandomizedSearchCV need scikit-learn >= 1.7: "
        "pip install 'cbackprop[sklearn]' (or pip install scikit-learn)"
    ) from exc

from cbackprop import _threads
from cbackprop.estimators import MLPClassifier, MLPRegressor
from cbackprop.many import train_bank
from cbackprop.trainer import Policy

__all__ = ["GridSearchCV", "RandomizedSearchCV", "fit_bank"]

#: scikit-learn 1.8 on passes the search to _fit_and_score (for its messages).
_TAKES_CALLER = "caller" in inspect.signature(_fit_and_score).parameters


def _caller(search) -> dict:
    return {"caller": search} if _TAKES_CALLER else {}


class _Runs(Policy):
    """The members' own epochs (`EstimatorRun`) as one policy of the bank;
    a member whose hooks raise is out, with its error kept."""

    def __init__(self, runs, errors):
        self.runs, self.errors = runs, errors

    def epoch_start(self, epoch, members):
        for k in members:
            try:
                self.runs[k].epoch_start(epoch, members)
            except Exception as exc:
                self.errors[k] = exc

    def epoch_end(self, member, epoch, logs):
        if self.errors[member] is not None:
            return True
        try:
            return self.runs[member].epoch_end(member, epoch, logs)
        except Exception as exc:
            self.errors[member] = exc
            return True

    def diverged(self, member, error, _epoch):
        try:
            self.runs[member].diverged(error)
        except Exception as exc:
            self.errors[member] = exc


def fit_bank(estimators, X, y, sample_weight=None, n_threads=None) -> list:
    """Fit estimators of one `bank_key` on (X, y) together, as one bank of
    networks (the trainer's bank backend, as `cbackprop.fit_many`).

    Each estimator ends fitted as its own ``fit(X, y, sample_weight)`` would
    leave it (to the rounding of the wide first-layer products). Returns one
    entry per estimator: None, or the exception its fit raised (that
    estimator is then not fitted; the others are).

    Parameters
    ----------
    estimators : list of MLPClassifier or MLPRegressor
        Distinct, unfitted (or without warm_start), with equal non-None
        `bank_key()`.
    X : array-like (n_samples, n_features), dense
    y, sample_weight : as for fit
    n_threads : int, optional
        Threads, as for `cbackprop.fit_many`.
    """
    estimators = list(estimators)
    if not estimators:
        raise ValueError("estimators is empty")
    keys = [est.bank_key() for est in estimators]
    if keys[0] is None or any(key != keys[0] for key in keys):
        raise ValueError("fit_bank needs estimators with one bank_key() that is not None; "
                         "fit the others with fit")
    if hasattr(X, "tocsr"):
        raise TypeError("fit_bank takes dense X only (cbackprop.fit_many's rule): fit "
                        "estimators on sparse input with fit")
    errors = [None] * len(estimators)
    runs = []
    for i, est in enumerate(estimators):
        try:
            runs.append((i, est.bank_run(X, y, sample_weight)))
        except Exception as exc:        # that estimator's fit failed, the others go on
            errors[i] = exc
    # One bank per training data (one random_state gives one split: normally all).
    banks = []
    for i, run in runs:
        for bank in banks:
            if _same_data(bank[0][1].session, run.session):
                bank.append((i, run))
                break
        else:
            banks.append([(i, run)])
    threads = _threads.most_threads(n_threads)
    for members in banks:
        index = [i for i, _ in members]
        mine = [run for _, run in members]
        lead = mine[0].session
        own = [None] * len(mine)
        policy = _Runs(mine, own)
        weights = lead.w[None, :] if lead.w.size else np.empty((0, lead.n_rows), lead.X.dtype)
        try:
            train_bank([run.session for run in mine], [run.history for run in mine],
                       lead.X, lead.Y, weights, max(est.max_iter for est in estimators),
                       [policy], shuffle=lead.shuffle, order_rng=None, threads=threads,
                       verbose=False, callbacks=None, on_divergence=policy.diverged)
        except Exception as exc:
            own = [exc] * len(mine)
        for k, (i, run) in enumerate(zip(index, mine)):
            errors[i] = own[k]
            if own[k] is None:
                run.finish()
    return errors


def _same_data(a, b) -> bool:
    """True when two sessions train on the same rows, targets and weights."""
    return all(x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
               for x, y in ((a.X, b.X), (a.Y, b.Y), (a.w, b.w)))


def _fit_and_score_bank(base_estimator, X, y, train, test, candidates, progress, caller,
                        fit_and_score_kwargs):
    """Fit the candidates (params dicts of one bank_key) on one split as a bank and
    score each as `_fit_and_score` would; a candidate whose bank fit failed is
    fitted again alone by `_fit_and_score` (its error handling). Returns one
    result dict per candidate."""
    kw = fit_and_score_kwargs
    estimators = [clone(base_estimator).set_params(**clone(p, safe=False)) for p in candidates]
    fit_params = _check_method_params(X, params=kw["fit_params"] or {}, indices=train)
    score_params = kw["score_params"] or {}
    score_train = _check_method_params(X, params=score_params, indices=train)
    score_test = _check_method_params(X, params=score_params, indices=test)
    start = time.time()
    X_train, y_train = _safe_split(estimators[0], X, y, train)
    X_test, y_test = _safe_split(estimators[0], X, y, test, train)
    errors = fit_bank(estimators, X_train, y_train, sample_weight=fit_params.get("sample_weight"))
    fit_time = (time.time() - start) / len(estimators)
    out = []
    for estimator, parameters, error, (split, candidate) in zip(
            estimators, candidates, errors, progress, strict=True):
        if error is not None:
            out.append(_fit_and_score(clone(base_estimator), X, y, train=train, test=test,
                                      parameters=parameters, split_progress=split,
                                      candidate_progress=candidate, **_caller(caller), **kw))
            continue
        t0 = time.time()
        result = {"fit_error": None,
                  "test_scores": _score(estimator, X_test, y_test, kw["scorer"], score_test,
                                        kw["error_score"])}
        score_time = time.time() - t0
        if kw["return_train_score"]:
            result["train_scores"] = _score(estimator, X_train, y_train, kw["scorer"],
                                            score_train, kw["error_score"])
        result.update(n_test_samples=_num_samples(X_test), fit_time=fit_time,
                      score_time=score_time)
        out.append(result)
    return out


class _BankSearch:
    """BaseSearchCV.fit with the candidates of one bank_key trained as banks."""

    def _banked(self, X, params) -> bool:
        """True when this search can train banks: a cbackprop MLP on dense X, with
        sample_weight as the only fit parameter, without metadata routing."""
        return (isinstance(self.estimator, (MLPClassifier, MLPRegressor))
                and not hasattr(X, "tocsr") and set(params) <= {"sample_weight"}
                and not sklearn.get_config()["enable_metadata_routing"])

    @_fit_context(prefer_skip_nested_validation=False)    # *SearchCV.estimator is not validated
    def fit(self, X, y=None, **params):
        """Run fit with all sets of parameters (scikit-learn's `fit`), training
        the candidates of one split that share a `bank_key()` as one bank.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        **params : dict of str -> object
            Parameters of the estimator's fit, the scorer and the splitter, as in
            scikit-learn.

        Returns
        -------
        self
        """
        if getattr(self.estimator, "checkpoint", None) is not None:
            raise ValueError(
                "the estimator's checkpoint names one file, and a search fits many "
                "candidates: search with checkpoint=None, then fit the best parameters "
                "with a checkpoint (best_estimator_.set_params(checkpoint=PATH).fit(X, y))")
        if not self._banked(X, params):
            return super().fit(X, y, **params)
        scorers, refit_metric = self._get_scorers()
        X, y = indexable(X, y)
        params = _check_method_params(X, params=params)
        routed_params = self._get_routed_params_for_fit(params)
        self._checked_cv_orig = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        split_params = routed_params.splitter.split
        check_input = getattr(self, "_check_input_parameters", None)   # scikit-learn >= 1.7
        if check_input is not None:
            check_input(X=X, y=y, split_params=split_params)
        self.n_splits_ = n_splits = self._checked_cv_orig.get_n_splits(X, y, **split_params)
        base_estimator = clone(self.estimator)
        candidates = list(self._candidates())
        splits = list(self._checked_cv_orig.split(X, y, **split_params))
        if len(splits) != n_splits:
            raise ValueError(f"cv.split and cv.get_n_splits return inconsistent results. "
                             f"Expected {n_splits} splits, got {len(splits)}")
        if self.verbose > 0:
            print(f"Fitting {n_splits} folds for each of {len(candidates)} candidates,"
                  f" totalling {len(candidates) * n_splits} fits")
        kwargs = dict(scorer=scorers, fit_params=routed_params.estimator.fit,
                      score_params=routed_params.scorer.score,
                      return_train_score=self.return_train_score, return_n_test_samples=True,
                      return_times=True, return_parameters=False,
                      error_score=self.error_score, verbose=self.verbose)
        # Candidates by bank key (set_params raises a bad parameter here, as in
        # scikit-learn's loop); a key of one candidate is no bank.
        banks = defaultdict(list)
        for c, parameters in enumerate(candidates):
            key = clone(base_estimator).set_params(**clone(parameters, safe=False)).bank_key()
            banks[("alone", c) if key is None else key].append(c)
        jobs, where = [], []
        for s, (train, test) in enumerate(splits):
            for members in banks.values():
                if len(members) == 1:
                    c = members[0]
                    jobs.append(delayed(_fit_and_score)(
                        clone(base_estimator), X, y, train=train, test=test,
                        parameters=candidates[c], split_progress=(s, n_splits),
                        candidate_progress=(c, len(candidates)), **_caller(self), **kwargs))
                    where.append([c * n_splits + s])
                else:
                    jobs.append(delayed(_fit_and_score_bank)(
                        base_estimator, X, y, train, test, [candidates[c] for c in members],
                        [((s, n_splits), (c, len(candidates))) for c in members], self, kwargs))
                    where.append([c * n_splits + s for c in members])
        out = [None] * (len(candidates) * n_splits)
        for positions, result in zip(where, Parallel(n_jobs=self.n_jobs,
                                                     pre_dispatch=self.pre_dispatch)(jobs)):
            for position, entry in zip(positions, result if isinstance(result, list)
                                       else [result], strict=True):
                out[position] = entry
        if not out:
            raise ValueError("No fits were performed. Was the CV iterator empty? "
                             "Were there no candidates?")
        _warn_or_raise_about_fit_failures(out, self.error_score)
        if callable(self.scoring):
            _insert_error_scores(out, self.error_score)
        results = self._format_results(candidates, n_splits, out, defaultdict(list))

        # From here as scikit-learn's BaseSearchCV.fit.
        first_test_score = out[0]["test_scores"]
        self.multimetric_ = isinstance(first_test_score, dict)
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(first_test_score)
            refit_metric = self.refit
        if self.refit or not self.multimetric_:
            self.best_index_ = self._select_best_index(self.refit, refit_metric, results)
            if not callable(self.refit):
                self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
            self.best_params_ = results["params"][self.best_index_]
        if self.refit:
            self.best_estimator_ = clone(base_estimator).set_params(
                **clone(self.best_params_, safe=False))
            refit_start_time = time.time()
            if y is not None:
                self.best_estimator_.fit(X, y, **routed_params.estimator.fit)
            else:
                self.best_estimator_.fit(X, **routed_params.estimator.fit)
            self.refit_time_ = time.time() - refit_start_time
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_
        # Several metrics: the scorers by name, as _get_scorers made them.
        self.scorer_ = (_check_multimetric_scoring(self.estimator, self.scoring)
                        if isinstance(scorers, _MultimetricScorer) else scorers)
        self.cv_results_ = results
        return self


class GridSearchCV(_BankSearch, sklearn_model_selection.GridSearchCV):
    """scikit-learn's GridSearchCV, training compatible candidates as one bank.

    The same parameters, attributes (`cv_results_`, `best_index_`,
    `best_params_`, `best_score_`, `best_estimator_`, `refit_time_`, …) and
    methods as `sklearn.model_selection.GridSearchCV`. Over a cbackprop
    `MLPClassifier` or `MLPRegressor`, the candidates that share a
    `bank_key()` (e.g. a grid over alpha and learning_rate_init with one
    random_state) are trained together on each split by
    `fit_bank`, with the scores scikit-learn's search
    gives (float64: to rounding); the others are fitted one by one.

    Examples
    --------
    >>> import cbackprop as cb
    >>> search = cb.GridSearchCV(cb.MLPClassifier(max_iter=30, random_state=0),
    ...                          {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]},
    ...                          cv=5)                                   # doctest: +SKIP
    >>> search.fit(X, y).best_params_                                    # doctest: +SKIP
    """

    def _candidates(self):
        return ParameterGrid(self.param_grid)


class RandomizedSearchCV(_BankSearch, sklearn_model_selection.RandomizedSearchCV):
    """scikit-learn's RandomizedSearchCV, training compatible candidates as one bank.

    As `sklearn.model_selection.RandomizedSearchCV` (the same sampled
    candidates for a given random_state), with the candidates that share a
    `bank_key()` trained together on each split, as in `GridSearchCV`.
    """

    def _candidates(self):
        return ParameterSampler(self.param_distributions, self.n_iter,
                                random_state=self.random_state)
