"""`python -m cbackprop`: train a network on the embedded digits and report test accuracy."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import cbackprop as cb

    X, y = cb.datasets.load_digits()
    X_train, X_test, y_train, y_test = cb.datasets.train_test_split(X / 16.0, y, 0.25, seed=0)
    net = cb.Network(n_inputs=64, layers=[cb.Dense(64, "relu"), cb.Dense(10, "softmax")],
                     loss="cross_entropy", dtype="float32", seed=0)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images; {net}")
    net.fit(X_train, y_train, optimizer=cb.Adam(lr=1e-3), epochs=30, batch_size=32,
            validation_data=(X_test, y_test), verbose=True)
    accuracy = net.evaluate(X_test, y_test)["accuracy"]
    print(f"test accuracy: {accuracy:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
