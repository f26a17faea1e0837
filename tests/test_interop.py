"""PyTorch and ONNX round trips, and the saved file read by safetensors.

Each test needs its optional package and skips without it (extras: torch, onnx,
and safetensors for the file-format test).
"""

import numpy as np
import pytest

import cbackprop as cb

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "silu"]
TOL = {"float32": 2e-6, "float64": 1e-12}


def deep_net(dtype, output="softmax", units=3):
    """Every hidden activation once, so each mapping is exercised."""
    layers = [cb.Dense(5, a) for a in HIDDEN] + [cb.Dense(units, output)]
    return cb.Network(4, layers, dtype=dtype, seed=7)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(0.0, 2.0, (64, 4))


# ---- PyTorch -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_to_torch_matches_predict(dtype, output, X):
    torch = pytest.importorskip("torch")
    net = deep_net(dtype, output)
    model = net.to_torch()
    assert isinstance(model, torch.nn.Sequential)
    with torch.no_grad():
        out = model(torch.from_numpy(X.astype(dtype))).numpy()
    assert out.dtype == net.dtype
    np.testing.assert_allclose(out, net.predict(X), rtol=TOL[dtype], atol=TOL[dtype])


def test_to_torch_logits_and_copies(X):
    torch = pytest.importorskip("torch")
    net = deep_net("float64")
    logits_model = net.to_torch(output_activation=False)
    assert isinstance(logits_model[-1], torch.nn.Linear)
    with torch.no_grad():
        logits = logits_model(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(),
                               net.predict(X), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        logits_model[0].weight.zero_()
    assert np.any(net.params[0][0] != 0)       # the network's θ is not shared


def test_torch_training_step_matches_fit():
    """One SGD step in torch from the exported model equals one step of fit."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(16, 4)), rng.integers(0, 3, 16)
    net = cb.Network(4, [cb.Dense(6, "tanh"), cb.Dense(3, "softmax")], dtype="float64", seed=0)
    model = net.to_torch(output_activation=False)
    net.fit(X, y, optimizer=cb.SGD(lr=0.5), epochs=1, batch_size=16, shuffle=False)
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(X)), torch.from_numpy(y))
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.5 * p.grad
    np.testing.assert_allclose(cb.Network.from_torch(model).theta, net.theta, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_from_torch_round_trip(dtype, X):
    pytest.importorskip("torch")
    net = deep_net(dtype)
    back = cb.Network.from_torch(net.to_torch())
    assert back.dtype == net.dtype and back.loss.name == "cross_entropy"
    assert [(lay.units, lay.activation) for lay in back.layers] == \
           [(lay.units, lay.activation) for lay in net.layers]
    np.testing.assert_array_equal(back.theta, net.theta)


def test_from_torch_builds_from_a_hand_written_model(X):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Identity(), nn.Linear(8, 8, bias=False),
                          nn.GELU(), nn.Linear(8, 2))
    net = cb.Network.from_torch(model, loss="huber", dtype="float64")
    assert net.loss.name == "huber" and net.dtype == np.float64
    np.testing.assert_array_equal(net.params[1][1], 0)
    with torch.no_grad():
        expected = model(torch.from_numpy(X.astype(np.float32))).double().numpy()
    np.testing.assert_allclose(net.predict(X), expected, rtol=1e-5, atol=1e-5)


def test_dropout_travels_both_ways(X):
    torch = pytest.importorskip("torch")
    net = cb.Network(4, [cb.Dense(8, "relu", dropout=0.25), cb.Dense(6, "tanh", dropout=0.5),
                         cb.Dense(3, "softmax")], dtype="float64", seed=0)
    model = net.to_torch()
    dropouts = [m.p for m in model if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.25, 0.5]
    assert isinstance(model[2], torch.nn.Dropout) and isinstance(model[1], torch.nn.ReLU)
    model.eval()                              # dropout is off in predict, as in eval mode
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(X)).numpy(), net.predict(X),
                                   rtol=1e-12, atol=1e-12)
    back = cb.Network.from_torch(model)
    assert [lay.dropout for lay in back.layers] == [0.25, 0.5, 0.0]
    nn = torch.nn
    with pytest.raises(ValueError, match="after Dropout"):
        cb.Network.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1), nn.Sigmoid(),
                                            nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="output layer"):
        cb.Network.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1)))


@pytest.mark.parametrize("build, error, match", [
    (lambda nn: nn.Linear(2, 2), TypeError, "nn.Sequential"),
    (lambda nn: nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)), TypeError, "BatchNorm1d"),
    (lambda nn: nn.Sequential(nn.ReLU(), nn.Linear(2, 3)), ValueError, "before the first"),
    (lambda nn: nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)), ValueError, "3 outputs"),
    (lambda nn: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Tanh()), ValueError, "in a row"),
    (lambda nn: nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(0.2)), ValueError, "0.01"),
    (lambda nn: nn.Sequential(nn.Linear(2, 3), nn.ELU(0.5)), ValueError, "alpha"),
    (lambda nn: nn.Sequential(nn.Linear(2, 3), nn.Softplus(beta=2)), ValueError, "beta"),
    (lambda nn: nn.Sequential(nn.Linear(2, 3), nn.GELU("tanh")), ValueError, "exact"),
    (lambda nn: nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=0)), ValueError, "dim"),
    (lambda nn: nn.Sequential(nn.Identity()), ValueError, "no Linear"),
])
def test_from_torch_refuses_what_it_cannot_copy(build, error, match):
    torch = pytest.importorskip("torch")
    with pytest.raises(error, match=match):
        cb.Network.from_torch(build(torch.nn))


# ---- ONNX --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_to_onnx_matches_predict(dtype, output, X, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = deep_net(dtype, output)
    path = tmp_path / "net.onnx"
    model = net.to_onnx(path)
    assert onnx.load(str(path)).graph == model.graph
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Gemm") == len(net.layers)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"X": X.astype(dtype)})
    assert out.dtype == net.dtype and out.shape == (64, 3)
    # float64 GELU uses a float32 erf (onnxruntime has no double Erf): see to_onnx.
    tol = {"float32": 2e-6, "float64": 1e-6}[dtype]
    np.testing.assert_allclose(out, net.predict(X), rtol=tol, atol=tol)


def test_to_onnx_graph_is_gemm_then_activation_and_any_batch(X):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = cb.Network(4, [cb.Dense(8, "relu"), cb.Dense(3, "softmax")], seed=0)
    model = net.to_onnx()
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu", "Gemm", "Softmax",
                                                     "Identity"]
    assert {i.name for i in model.graph.initializer} == {"layers.0.W", "layers.0.b",
                                                         "layers.1.W", "layers.1.b"}
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for rows in (1, 5):
        (out,) = session.run(None, {"X": X[:rows].astype(np.float32)})
        np.testing.assert_allclose(out, net.predict(X[:rows]), rtol=1e-6, atol=1e-6)


def test_to_onnx_checks_the_opset():
    pytest.importorskip("onnx")
    net = cb.Network(2, [cb.Dense(1)], seed=0)
    with pytest.raises(ValueError, match="opset"):
        net.to_onnx(opset=11)


def test_missing_package_message(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def without_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_torch)
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    net = cb.Network(2, [cb.Dense(1)], seed=0)
    with pytest.raises(ImportError, match=r"cbackprop\[torch\]"):
        net.to_torch()


# ---- the saved file is safetensors --------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_saved_file_reads_with_safetensors(dtype, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    net = cb.Network(5, [cb.Dense(4, "relu"), cb.Dense(3, "softmax")], dtype=dtype, seed=3)
    path = tmp_path / "net.safetensors"
    net.save(path)
    tensors = st.load_file(str(path))
    assert set(tensors) == {"layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"}
    for i, (W, b) in enumerate(net.params):
        for name, arr in (("W", W), ("b", b)):
            got = tensors[f"layers.{i}.{name}"]
            assert got.dtype == net.dtype and got.shape == arr.shape
            np.testing.assert_array_equal(got, arr)
