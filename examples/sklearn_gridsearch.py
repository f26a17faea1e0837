"""A scikit-learn grid search over cbackprop's MLPClassifier, on the digits.

    python examples/sklearn_gridsearch.py [--max-iter 30] [--cv 3]

cbackprop.MLPClassifier follows scikit-learn's estimator API, so pipelines,
cross-validation and searches work as with any scikit-learn model.
"""

import argparse
import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

import cbackprop as cb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=30, help="epochs per fit")
    parser.add_argument("--cv", type=int, default=3, help="cross-validation folds")
    args = parser.parse_args(argv)

    X, y = cb.datasets.load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    model = make_pipeline(MinMaxScaler(),
                          cb.MLPClassifier(max_iter=args.max_iter, random_state=0))
    grid = {
        "mlpclassifier__hidden_layer_sizes": [(32,), (64,), (64, 32)],
        "mlpclassifier__alpha": [0.0, 1e-3],
    }
    search = GridSearchCV(model, grid, cv=args.cv)
    with warnings.catch_warnings():
        # Short fits on purpose: a few epochs per setting are enough to rank them.
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X_train, y_train)

    print("mean cross-validated accuracy per setting:")
    results = search.cv_results_
    for params, score in zip(results["params"], results["mean_test_score"], strict=True):
        shown = ", ".join(f"{k.split('__')[1]}={v}" for k, v in params.items())
        print(f"  {score:.3f}  {shown}")
    best = ", ".join(f"{k.split('__')[1]}={v}" for k, v in search.best_params_.items())
    print(f"best: {best}")
    print(f"test accuracy of the best model: {search.score(X_test, y_test):.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
