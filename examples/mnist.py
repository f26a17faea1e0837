"""MNIST from a local directory of the four IDX files (nothing is downloaded).

    python examples/mnist.py DIR [--epochs 10] [--hidden 256,128] [--threads 4]

DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, raw or .gz.
"""

import argparse
import time

import cbackprop as cb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", default="256,128", help="hidden layer sizes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads")
    args = parser.parse_args(argv)

    try:
        X_train, X_test, y_train, y_test = cb.datasets.load_mnist(args.directory)
    except (OSError, ValueError) as exc:
        parser.exit(1, f"{parser.prog}: {exc}\n(download the four MNIST files into "
                       f"{args.directory} first: nothing is downloaded here)\n")
    print(f"MNIST: {len(X_train)} training and {len(X_test)} test images of "
          f"{X_train.shape[1]} pixels")
    hidden = [int(n) for n in args.hidden.split(",") if n]
    net = cb.Network(n_inputs=X_train.shape[1],
                     layers=[cb.Dense(n, "relu") for n in hidden] + [cb.Dense(10, "softmax")],
                     loss="cross_entropy", dtype="float32", seed=0, n_threads=args.threads)
    start = time.perf_counter()
    net.fit(X_train, y_train, optimizer=cb.Adam(lr=1e-3), epochs=args.epochs,
            batch_size=args.batch_size, validation_data=(X_test, y_test), verbose=True)
    seconds = time.perf_counter() - start
    result = net.evaluate(X_test, y_test)
    print(f"trained in {seconds:.1f} s; test accuracy {result['accuracy']:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
