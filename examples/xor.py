"""XOR, the classic: no straight line separates it, one hidden layer does.

    python examples/xor.py [--epochs 500]
"""

import argparse

import numpy as np

import cbackprop as cb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=500)
    args = parser.parse_args(argv)

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0], dtype=float)

    # 2 inputs → 4 tanh units → 1 sigmoid output; binary cross-entropy on 0/1 targets.
    net = cb.Network(n_inputs=2, layers=[cb.Dense(4, "tanh"), cb.Dense(1, "sigmoid")],
                     loss="binary_cross_entropy", dtype="float64", seed=0)
    history = net.fit(X, y, optimizer=cb.SGD(lr=0.5, momentum=0.9), epochs=args.epochs,
                      batch_size=4)
    print(f"loss after {len(history)} epochs: {history['loss'][-1]:.5f}")

    p = net.predict(X)[:, 0]
    print(" x1  x2   target   output")
    for (a, b), target, out in zip(X, y, p, strict=True):
        print(f"  {a:.0f}   {b:.0f}     {target:.0f}      {out:.3f}")
    solved = np.array_equal(p > 0.5, y > 0.5)
    print("solved" if solved else "not solved yet: try more epochs")
    return 0 if solved else 1


if __name__ == "__main__":
    raise SystemExit(main())
