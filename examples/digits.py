"""Handwritten digits (8×8 pixels, embedded in the package): train, test, plot.

    python examples/digits.py [--epochs 30] [--plot curves.png] [--save digits.cbp]
"""

import argparse

import cbackprop as cb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--plot", help="draw the learning curves to this image (matplotlib)")
    parser.add_argument("--save", help="save the trained network to this file")
    args = parser.parse_args(argv)

    X, y = cb.datasets.load_digits()
    X_train, X_test, y_train, y_test = cb.datasets.train_test_split(X / 16.0, y, 0.25, seed=0)
    net = cb.Network(n_inputs=64, layers=[cb.Dense(64, "relu"), cb.Dense(10, "softmax")],
                     loss="cross_entropy", dtype="float32", seed=0)
    history = net.fit(X_train, y_train, optimizer=cb.Adam(lr=1e-3), epochs=args.epochs,
                      batch_size=32, validation_data=(X_test, y_test), verbose=True)
    result = net.evaluate(X_test, y_test)
    print(f"test loss {result['loss']:.4f}, test accuracy {result['accuracy']:.2%}")

    # The most confident mistakes, if any.
    proba = net.predict(X_test)
    wrong = (proba.argmax(axis=1) != y_test).nonzero()[0]
    for i in wrong[proba[wrong].max(axis=1).argsort()[::-1][:3]]:
        print(f"  test image {i}: a {y_test[i]}, taken for a {proba[i].argmax()} "
              f"(p = {proba[i].max():.2f})")

    if args.plot:
        history.plot(args.plot, title="digits: 64-64-10, Adam")
        print(f"learning curves written to {args.plot}")
    if args.save:
        net.save(args.save)
        print(f"network saved to {args.save}; reload it with cb.load({args.save!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
