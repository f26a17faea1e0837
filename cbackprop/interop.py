"""Moving networks to and from PyTorch and ONNX.

Each function is also a Network method: `net.to_torch()`,
`cb.Network.from_torch(model)`, `net.to_onnx(path)`. PyTorch and onnx are
optional: install them with ``pip install 'cbackprop[torch]'`` or
``pip install 'cbackprop[onnx]'`` (which brings onnxruntime to check exports).

Layouts: a Dense layer's W is (inputs, units) and z = a·W + b; a
`torch.nn.Linear` stores weight as (units, inputs) and computes a·weightᵀ +
bias, so weight = Wᵀ. ONNX's Gemm takes W as it is.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cbackprop.network import Network

_OPSET = 17


def _require(module: str, extra: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{what} needs the {module} package, which is not installed: "
            f"pip install 'cbackprop[{extra}]'"
        ) from None


# ---- PyTorch ------------------------------------------------------------------

def _torch_activation(nn, name: str):
    """The torch module computing activation `name` exactly as the kernels do."""
    return {
        "sigmoid": lambda: nn.Sigmoid(),
        "tanh": lambda: nn.Tanh(),
        "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
        "elu": lambda: nn.ELU(alpha=1.0),
        "softplus": lambda: nn.Softplus(),
        "gelu": lambda: nn.GELU(approximate="none"),
        "silu": lambda: nn.SiLU(),
        "softmax": lambda: nn.Softmax(dim=-1),
    }[name]()


def to_torch(net: Network, output_activation: bool = True):
    """The network as a `torch.nn.Sequential` of Linear layers and activations.

    Parameters
    ----------
    net : Network
    output_activation : bool, default True
        Include the output layer's activation, so the module's outputs equal
        `net.predict`. False ends with the last Linear (logits), the input
        that `torch.nn.CrossEntropyLoss` and `BCEWithLogitsLoss` expect.

    Returns
    -------
    torch.nn.Sequential
        Its parameters are copies (in the network's dtype), not views: training
        one does not change the other. A layer with dropout is followed by
        `nn.Dropout(p)` (active in train mode only, as in fit).
    """
    torch = _require("torch", "torch", "Network.to_torch")
    nn = torch.nn
    dtype = torch.float32 if net.dtype == np.float32 else torch.float64
    modules = []
    for i, ((W, b), layer) in enumerate(zip(net.params, net.layers, strict=True)):
        linear = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            linear.bias.copy_(torch.from_numpy(b.copy()))
        modules.append(linear)
        last = i == len(net.layers) - 1
        if layer.activation != "identity" and (output_activation or not last):
            modules.append(_torch_activation(nn, layer.activation))
        if layer.dropout > 0:
            modules.append(nn.Dropout(layer.dropout))
    return nn.Sequential(*modules)


def _activation_name(nn, module) -> str | None:
    """Our name for a torch activation module; None for nn.Identity.

    Raises ValueError for a module whose settings differ from ours.
    """
    kind = type(module)
    simple = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu", nn.SiLU: "silu",
              nn.Identity: None}
    if kind in simple:
        return simple[kind]
    if kind is nn.LeakyReLU:
        if module.negative_slope != 0.01:
            raise ValueError(f"{module}: only negative_slope=0.01 is supported")
        return "leaky_relu"
    if kind is nn.ELU:
        if module.alpha != 1.0:
            raise ValueError(f"{module}: only alpha=1.0 is supported")
        return "elu"
    if kind is nn.Softplus:
        if module.beta != 1.0:
            raise ValueError(f"{module}: only beta=1 is supported")
        return "softplus"
    if kind is nn.GELU:
        if module.approximate != "none":
            raise ValueError(f"{module}: only the exact GELU (approximate='none') is supported")
        return "gelu"
    if kind is nn.Softmax:
        if module.dim not in (1, -1):
            raise ValueError(f"{module}: softmax must be over the features (dim=1 or -1)")
        return "softmax"
    raise TypeError(
        f"from_torch supports Linear layers and Sigmoid, Tanh, ReLU, LeakyReLU, ELU, "
        f"Softplus, GELU, SiLU, Softmax and Identity; got {kind.__name__}"
    )


def from_torch(network_class: type[Network], module, loss=None, dtype=None) -> Network:
    """A Network with the layers and parameters of a `torch.nn.Sequential`.

    Parameters
    ----------
    network_class : type
        The class to build: `Network` (or a subclass), which calls this as
        `Network.from_torch`.
    module : torch.nn.Sequential
        Linear layers, each followed by at most one supported activation
        (Sigmoid, Tanh, ReLU, LeakyReLU(0.01), ELU(1), Softplus(beta=1), GELU
        exact, SiLU, Softmax over the features) and then at most one
        nn.Dropout (hidden layers only); nn.Identity is skipped. A Linear
        without bias gets b = 0.
    loss : str or Loss, optional
        The network's loss; default from the output activation, as in Network.
    dtype : {"float32", "float64"}, optional
        Default: float64 when the module's parameters are float64, else
        float32.

    Returns
    -------
    Network
        With copies of the module's parameters; `predict` matches the
        module's forward pass within float tolerance.

    Raises
    ------
    TypeError
        If `module` is not an nn.Sequential or holds an unsupported module.
    ValueError
        If the shapes do not chain or an activation's settings differ from
        cbackprop's.
    """
    torch = _require("torch", "torch", "Network.from_torch")
    from cbackprop.layers import Dense

    nn = torch.nn
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"from_torch takes a torch.nn.Sequential, got {type(module).__name__}")
    linears: list = []
    activations: list[str] = []
    dropouts: list[float] = []
    for child in module:
        if isinstance(child, nn.Linear):
            linears.append(child)
            activations.append("identity")
            dropouts.append(0.0)
            continue
        if isinstance(child, nn.Dropout):
            name, what = "dropout", "Dropout"
        else:
            name = _activation_name(nn, child)
            if name is None:
                continue
            what = "an activation"
        if not linears:
            raise ValueError(f"{child} comes before the first Linear layer")
        if dropouts[-1] > 0:
            raise ValueError(f"{what} after Dropout in Linear layer {len(linears)}: cbackprop "
                             "drops a layer's outputs after its activation")
        if name == "dropout":
            dropouts[-1] = float(child.p)
        elif activations[-1] != "identity":
            raise ValueError(f"two activations in a row after Linear layer {len(linears)}: "
                             f"{activations[-1]} and {name}")
        else:
            activations[-1] = name
    if not linears:
        raise ValueError("the Sequential has no Linear layer")
    for i, (before, after) in enumerate(zip(linears[:-1], linears[1:], strict=True)):
        if before.out_features != after.in_features:
            raise ValueError(f"Linear layer {i + 1} has {before.out_features} outputs but layer "
                             f"{i + 2} takes {after.in_features} inputs")
    if dtype is None:
        dtype = "float64" if linears[0].weight.dtype == torch.float64 else "float32"
    layers = [Dense(lin.out_features, act, p)
              for lin, act, p in zip(linears, activations, dropouts, strict=True)]
    net = network_class(n_inputs=linears[0].in_features, layers=layers, loss=loss,
                                     dtype=dtype)
    with torch.no_grad():
        for (W, b), lin in zip(net.params, linears, strict=True):
            W[...] = lin.weight.detach().cpu().double().numpy().T
            b[...] = 0 if lin.bias is None else lin.bias.detach().cpu().double().numpy()
    return net


# ---- ONNX ---------------------------------------------------------------------

class _GraphBuilder:
    """Appends ONNX nodes with unique names; keeps the initializers."""

    def __init__(self, onnx, elem_type: int, np_dtype):
        self.onnx = onnx
        self.helper = onnx.helper
        self.elem_type = elem_type
        self.np_dtype = np_dtype
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0
        self._constants: set[str] = set()

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, name: str, value: float) -> str:
        """A scalar initializer, created on first use and shared after."""
        if name not in self._constants:
            arr = np.asarray(value, dtype=self.np_dtype)
            self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
            self._constants.add(name)
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _onnx_activation(g: _GraphBuilder, name: str, z: str) -> str:
    """Nodes computing activation `name` of tensor z; returns the output's name.

    onnxruntime has no double kernels for Elu, Softplus and Erf, so float64
    graphs build those from elementary ops (same formulas as the kernels).
    """
    double = g.np_dtype == np.float64
    if name == "identity":
        return z
    if name in ("sigmoid", "tanh", "relu"):
        return g.op({"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}[name], [z])
    if name == "leaky_relu":
        return g.op("LeakyRelu", [z], alpha=0.01)
    if name == "softmax":
        return g.op("Softmax", [z], axis=-1)
    if name == "silu":
        return g.op("Mul", [z, g.op("Sigmoid", [z])], hint="silu")
    if name == "elu":
        if not double:
            return g.op("Elu", [z], alpha=1.0)
        zero, one = g.constant("zero", 0.0), g.constant("one", 1.0)
        # max(z, 0) + (exp(min(z, 0)) − 1)
        expm1 = g.op("Sub", [g.op("Exp", [g.op("Min", [z, zero])]), one])
        return g.op("Add", [g.op("Max", [z, zero]), expm1], hint="elu")
    if name == "softplus":
        if not double:
            return g.op("Softplus", [z])
        zero, one = g.constant("zero", 0.0), g.constant("one", 1.0)
        # max(z, 0) + log(1 + exp(−|z|)), stable for any z
        tail = g.op("Log", [g.op("Add", [one, g.op("Exp", [g.op("Neg", [g.op("Abs", [z])])])])])
        return g.op("Add", [g.op("Max", [z, zero]), tail], hint="softplus")
    if name == "gelu":
        # z · Φ(z) = ½ z (1 + erf(z / √2)); erf in float32 for double graphs (see above).
        scaled = g.op("Div", [z, g.constant("sqrt2", np.sqrt(2.0))])
        if double:
            f32 = g.onnx.TensorProto.FLOAT
            erf = g.op("Cast", [g.op("Erf", [g.op("Cast", [scaled], to=f32)])],
                       to=g.elem_type)
        else:
            erf = g.op("Erf", [scaled])
        half_z = g.op("Mul", [z, g.constant("half", 0.5)])
        return g.op("Mul", [half_z, g.op("Add", [g.constant("one", 1.0), erf])], hint="gelu")
    raise ValueError(f"no ONNX export for activation {name!r}")


def to_onnx(net: Network, path=None, opset: int = _OPSET):
    """Export the network's forward pass as an ONNX graph.

    The graph takes "X" of shape (batch, n_inputs) in the network's dtype and
    returns "Y" of shape (batch, n_outputs), equal to `net.predict(X)`: one
    Gemm per layer followed by its activation (Softmax over the last axis for
    a softmax output). In float64 graphs, GELU's erf is evaluated in float32
    (onnxruntime has no double Erf), so those outputs agree to about 1e-7.

    Parameters
    ----------
    net : Network
    path : str or os.PathLike, optional
        Where to write the model; None only returns it.
    opset : int, default 17
        ONNX operator set version (13 or later).

    Returns
    -------
    onnx.ModelProto
        Checked with `onnx.checker.check_model`.
    """
    onnx = _require("onnx", "onnx", "Network.to_onnx")
    from cbackprop._version import __version__

    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ValueError(f"opset must be an integer >= 13 (Softmax over one axis), got {opset!r}")
    double = net.dtype == np.float64
    elem_type = onnx.TensorProto.DOUBLE if double else onnx.TensorProto.FLOAT
    g = _GraphBuilder(onnx, elem_type, net.dtype)
    a = "X"
    for i, ((W, b), layer) in enumerate(zip(net.params, net.layers, strict=True)):
        w_name, b_name = f"layers.{i}.W", f"layers.{i}.b"
        g.initializers.append(onnx.numpy_helper.from_array(np.array(W), w_name))
        g.initializers.append(onnx.numpy_helper.from_array(np.array(b), b_name))
        a = _onnx_activation(g, layer.activation, g.op("Gemm", [a, w_name, b_name], hint="z"))
    g.nodes.append(onnx.helper.make_node("Identity", [a], ["Y"], name="output"))
    graph = onnx.helper.make_graph(
        g.nodes, "cbackprop",
        [onnx.helper.make_tensor_value_info("X", elem_type, ["batch", net.n_inputs])],
        [onnx.helper.make_tensor_value_info("Y", elem_type, ["batch", net.n_outputs])],
        initializer=g.initializers,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="cbackprop", producer_version=__version__)
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
