"""Each optimizer: two steps against its rule computed by hand (and torch.optim)."""

import numpy as np
import pytest

import cbackprop as cb

THETA0 = np.array([0.5, -1.0, 2.0, 0.0])
GRADS = [np.array([0.1, -0.2, 0.3, -0.4]), np.array([-0.05, 0.4, 0.1, 0.2])]


def by_hand(name, cfg):
    """Two steps of each rule, written out in float64."""
    theta = THETA0.copy()
    m = np.zeros(4)
    v = np.zeros(4)
    for t, g in enumerate(GRADS, start=1):
        if name == "sgd":
            g = g + cfg["weight_decay"] * theta
            v = cfg["momentum"] * v + g
            theta = theta - cfg["lr"] * (g + cfg["momentum"] * v if cfg["nesterov"] else v)
        elif name in ("adam", "adamw"):
            if name == "adamw":
                theta = theta * (1 - cfg["lr"] * cfg["weight_decay"])
            else:
                g = g + cfg["weight_decay"] * theta
            b1, b2 = cfg["betas"]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            theta = theta - cfg["lr"] * m_hat / (np.sqrt(v_hat) + cfg["eps"])
        else:  # rmsprop
            g = g + cfg["weight_decay"] * theta
            v = cfg["alpha"] * v + (1 - cfg["alpha"]) * g * g
            step = g / (np.sqrt(v) + cfg["eps"])
            if cfg["momentum"]:
                m = cfg["momentum"] * m + step
                step = m
            theta = theta - cfg["lr"] * step
    return theta


CASES = [
    (cb.SGD, {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
    (cb.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.01}),
    (cb.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.0}),
    (cb.Adam, {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}),
    (cb.Adam, {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    (cb.AdamW, {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}),
    (cb.RMSprop, {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0}),
    (cb.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "momentum": 0.5, "weight_decay": 0.1}),
]


def ids(case):
    return case[0].__name__ + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_two_steps_follow_the_rule(case, dtype):
    cls, cfg = case
    opt = cls(**cfg)
    theta = THETA0.astype(dtype)
    for g in GRADS:
        opt.step(theta, g.astype(dtype))
    assert opt.t == 2
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(theta, by_hand(cls.name, cfg), rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_matches_torch_optim(case):
    torch = pytest.importorskip("torch")
    cls, cfg = case
    ours = cls(**cfg)
    theta = THETA0.copy()
    p = torch.nn.Parameter(torch.tensor(THETA0))
    torch_cfg = dict(cfg)
    torch_cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam,
                 "AdamW": torch.optim.AdamW, "RMSprop": torch.optim.RMSprop}[cls.__name__]
    theirs = torch_cls([p], **torch_cfg)
    for g in GRADS:
        ours.step(theta, g.copy())
        p.grad = torch.tensor(g)
        theirs.step()
    np.testing.assert_allclose(theta, p.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bad", [
    lambda: cb.SGD(lr=0), lambda: cb.SGD(lr=-1), lambda: cb.SGD(lr=float("nan")),
    lambda: cb.SGD(momentum=1.0), lambda: cb.SGD(nesterov=True),
    lambda: cb.Adam(betas=(0.9, 1.0)), lambda: cb.Adam(eps=0), lambda: cb.AdamW(weight_decay=-0.1),
    lambda: cb.RMSprop(alpha=1.5), lambda: cb.SGD(lr="0.1"),
])
def test_bad_hyperparameters_raise(bad):
    with pytest.raises((ValueError, TypeError)):
        bad()


def test_optimizer_state_is_bound_to_its_network():
    opt = cb.Adam()
    a = cb.Network(3, [cb.Dense(2)], seed=0)
    b = cb.Network(4, [cb.Dense(2)], seed=0)
    X, y = np.ones((4, 3)), np.zeros((4, 2))
    a.fit(X, y, optimizer=opt)
    before = b.theta.copy()
    with pytest.raises(ValueError, match="new optimizer"):
        b.fit(np.ones((4, 4)), y, optimizer=opt)
    np.testing.assert_array_equal(b.theta, before)
    opt.reset()
    b.fit(np.ones((4, 4)), y, optimizer=opt)
