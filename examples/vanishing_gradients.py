"""The lecture's warning, measured: σ' ≤ 1/4, so in a deep sigmoid network
∂C/∂w shrinks layer by layer towards the input; relu does not shrink it.

    python examples/vanishing_gradients.py [--depth 8] [--epochs 3]

Both networks train on the digits with fit(health=True); the table shows each
layer's mean gradient norm ‖∂C/∂θˡ‖ in the last epoch, and how many times
smaller the first layer's is than the last's.
"""

import argparse

import cbackprop as cb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8, help="hidden layers (default: 8)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    X, y = cb.datasets.load_digits()
    norms = {}
    for activation in ("sigmoid", "relu"):
        layers = [cb.Dense(32, activation) for _ in range(args.depth)]
        net = cb.Network(64, layers + [cb.Dense(10, "softmax")], seed=0)
        history = net.fit(X / 16, y, optimizer=cb.SGD(lr=0.05), epochs=args.epochs,
                          health=True)
        last = history.epoch[-1]
        norms[activation] = [r["grad_norm"] for r in history["health"] if r["epoch"] == last]
        print(f"{activation}, {args.depth} hidden layers:")
        print(history.health_table())
        print()
    print(f"{'layer':>5}  {'sigmoid ‖∂C/∂θ‖':>16}  {'relu ‖∂C/∂θ‖':>14}")
    for layer, (s, r) in enumerate(zip(norms["sigmoid"], norms["relu"]), start=1):
        print(f"{layer:>5}  {s:>16.2e}  {r:>14.2e}")
    for activation, g in norms.items():
        print(f"{activation}: ‖∂C/∂θ‖ of the output layer / of the first layer = "
              f"{g[-1] / g[0]:.3g}")


if __name__ == "__main__":
    main()
