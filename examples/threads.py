"""Several models trained at once, one per thread.

    python examples/threads.py [--models 4] [--epochs 20]

fit runs its minibatch loop without the GIL, so networks trained in separate
Python threads use separate cores. Each network pins BLAS to one thread
(n_threads=1) so the threads do not compete for the same cores.
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import cbackprop as cb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    X, y = cb.datasets.load_digits()
    X_train, X_test, y_train, y_test = cb.datasets.train_test_split(X / 16.0, y, 0.25, seed=0)

    # A small hyper-parameter sweep: one learning rate per model.
    rates = [1e-3 * 2 ** i for i in range(args.models)]

    def train(lr):
        net = cb.Network(n_inputs=64, layers=[cb.Dense(256, "relu"), cb.Dense(10, "softmax")],
                         seed=0, n_threads=1)
        net.fit(X_train, y_train, optimizer=cb.Adam(lr=lr), epochs=args.epochs, batch_size=32)
        return lr, net.evaluate(X_test, y_test)["accuracy"]

    start = time.perf_counter()
    serial = [train(lr) for lr in rates]
    one_at_a_time = time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        parallel = list(pool.map(train, rates))
    at_once = time.perf_counter() - start

    for (lr, accuracy), (_, again) in zip(serial, parallel, strict=True):
        print(f"lr {lr:.4f}: test accuracy {accuracy:.2%} (threaded run: {again:.2%})")
    print(f"{args.models} models one after another: {one_at_a_time:.2f} s; "
          f"in {args.workers} threads: {at_once:.2f} s "
          f"({one_at_a_time / at_once:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
