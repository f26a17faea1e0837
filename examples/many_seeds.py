"""Many networks at once: the spread over seeds and a learning-rate sweep on digits,
all trained in one cb.fit_many call.

    python examples/many_seeds.py [--epochs 20] [--seeds 4]
"""

import argparse

import numpy as np

import cbackprop as cb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args(argv)

    X, y = cb.datasets.load_digits()
    X_train, X_test, y_train, y_test = cb.datasets.train_test_split(X / 16.0, y, 0.25, seed=0)
    rates = [3e-4, 1e-3, 3e-3]
    grid = [(lr, seed) for lr in rates for seed in range(args.seeds)]
    nets = [cb.Network(64, [cb.Dense(64, "relu"), cb.Dense(10, "softmax")], seed=seed)
            for _, seed in grid]
    optimizers = [cb.Adam(lr=lr) for lr, _ in grid]
    histories = cb.fit_many(nets, X_train, y_train, optimizers, epochs=args.epochs,
                            validation_data=(X_test, y_test), seed=0)

    print(f"{len(nets)} networks, {args.epochs} epochs, one pass over the data per epoch")
    for lr in rates:
        accuracy = [h["val_accuracy"][-1] for (rate, _), h in zip(grid, histories) if rate == lr]
        print(f"Adam lr {lr:g}: test accuracy {np.mean(accuracy):.2%} "
              f"± {np.std(accuracy):.2%} over {len(accuracy)} seeds")


if __name__ == "__main__":
    main()
