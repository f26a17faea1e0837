"""`cbackprop playground`: the lab (every number from the library's API), its JSON
API (bad requests are 400s with a message), the server's start and stop, and that
`import cbackprop` does not import it. The page itself: test_playground_browser.py."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest

import cbackprop as cb

ROOT = Path(__file__).resolve().parent.parent


def test_import_cbackprop_does_not_import_the_playground_or_its_server():
    code = ("import sys, cbackprop as cb; assert callable(cb.playground); "
            "bad = [m for m in ('starlette', 'uvicorn', 'cbackprop.playground.app') "
            "if m in sys.modules]; print(bad)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code.replace("assert callable(cb.playground); ",
                                                             "")],
                         capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    # cb.playground loads the subpackage, still without the server's packages.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_without_the_extra_the_playground_names_it():
    """Without uvicorn (or Starlette), cb.playground() and `cbackprop playground` say
    which extra to install, in one line, not Python's bare ModuleNotFoundError."""
    code = ("import sys; sys.modules['uvicorn'] = None\n"
            "import cbackprop as cb\n"
            "try:\n    cb.playground(open_browser=False, block=False)\n"
            "except ImportError as exc:\n    print(exc)\n"
            "from cbackprop.__main__ import main\n"
            "print('status', main(['playground', '--no-browser']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, timeout=60)
    assert 'pip install "cbackprop[playground]"' in out.stdout
    assert "status 1" in out.stdout
    assert 'pip install "cbackprop[playground]"' in out.stderr
    assert "Traceback" not in out.stderr


def test_cb_playground_is_callable_before_and_after_the_subpackage_is_imported():
    import cbackprop.playground as sub
    assert callable(cb.playground) and callable(sub)
    assert "playground" in dir(cb)


pytest.importorskip("starlette", reason="the [playground] extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the [playground] extra (uvicorn) is not installed")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx (the [test] extra)")

with warnings.catch_warnings():     # starlette ≥ 1.x suggests httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from cbackprop.__main__ import build_parser  # noqa: E402
from cbackprop.playground import Playground, playground  # noqa: E402
from cbackprop.playground.app import clean, create_app  # noqa: E402
from cbackprop.playground.lab import LECTURE_X, LECTURE_Y, Conflict, Lab  # noqa: E402


def lecture_network(seed=0):
    return cb.Network(2, [cb.Dense(2, "sigmoid"), cb.Dense(2, "sigmoid")], loss="mse",
                      dtype="float64", seed=seed, n_threads=1)


@pytest.fixture
def lab():
    lab = Lab()
    yield lab
    lab.close()


@pytest.fixture
def client(lab):
    with TestClient(create_app(lab), raise_server_exceptions=False) as c:
        yield c


# ---- the walk ---------------------------------------------------------------------

def test_default_is_the_lectures_2_2_2_sigmoid_network_on_xor(lab):
    assert lab.net.sizes == (2, 2, 2)
    assert [layer.activation for layer in lab.net.layers] == ["sigmoid", "sigmoid"]
    assert lab.net.loss.name == "mse" and lab.data.name == "xor"
    np.testing.assert_array_equal(lab.net.theta, lecture_network().theta)


def test_the_walk_is_trace_with_finite_differences_and_the_update(lab):
    w = lab.walk("lecture")
    assert w["x"] == list(LECTURE_X) and w["y"] == list(LECTURE_Y)
    records = lab.net.trace(np.array(LECTURE_X), np.array(LECTURE_Y))
    for rec, layer in zip(records, w["layers"]):
        for field in ("z", "a", "dC_dz", "dC_dW", "dC_db"):
            np.testing.assert_array_equal(np.array(layer[field]), getattr(rec, field))
        np.testing.assert_allclose(layer["fd_W"], rec.dC_dW, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(layer["fd_b"], rec.dC_db, rtol=1e-6, atol=1e-12)
    assert w["gradcheck"] < 1e-6
    # The sum shown on hover: ∂C/∂z = σ'(z)·Σ w·∂C/∂z′ for hidden units, ∂C/∂a·σ'(z) at the end.
    hidden, out = w["layers"]
    np.testing.assert_allclose(np.multiply(hidden["dsigma"], hidden["back_sum"]),
                               hidden["dC_dz"], rtol=1e-12)
    np.testing.assert_allclose(np.multiply(out["dsigma"], out["dC_da"]), out["dC_dz"],
                               rtol=1e-12)
    # The update θ ← θ − η∇C lowers this example's cost.
    np.testing.assert_allclose(np.array(hidden["W_new"]),
                               np.array(hidden["W"]) - w["lr"] * np.array(hidden["dC_dW"]))
    assert w["cost_after"] < w["cost"]


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu", "elu", "softplus",
                                        "gelu", "silu", "identity"])
def test_the_hover_sum_holds_for_every_hidden_activation(lab, activation):
    lab.set_network(hidden="3,3", activations=activation, output="softmax")
    w = lab.walk(5)
    assert w["example"] == "training row 5"
    for layer in w["layers"][:-1]:
        np.testing.assert_allclose(np.multiply(layer["dsigma"], layer["back_sum"]),
                                   layer["dC_dz"], rtol=1e-10, atol=1e-15)
    out = w["layers"][-1]
    np.testing.assert_allclose(np.subtract(out["a"], out["target"]), out["dC_dz"], atol=1e-12)


def test_a_network_without_hidden_layers_walks_and_trains(lab):
    lab.set_network(hidden="", output="softmax")
    assert lab.net.sizes == (2, 2)
    w = lab.walk()
    assert len(w["layers"]) == 1 and "back_sum" not in w["layers"][0]
    lab.train("epoch")
    assert lab.wait(30) and lab.snapshot()["epochs_done"] == 1


def test_the_walk_during_a_run_sees_one_theta(lab):
    lab.set_data("digits")
    lab.set_network(hidden="16", activations="tanh", output="softmax")
    lab.set_settings(optimizer="adam", lr="0.01", epochs=10_000, batch_size=1)
    lab.train("start")
    try:
        w = lab.walk(0)
        # Every figure of the walk belongs to the same θ: backprop equals finite differences.
        assert w["gradcheck"] < 1e-6
        for layer in w["layers"]:
            np.testing.assert_allclose(layer["fd_W"], layer["dC_dW"], rtol=1e-5, atol=1e-9)
    finally:
        lab.close()


# ---- training ---------------------------------------------------------------------

def test_a_run_of_two_epochs_is_fit_with_the_same_settings(lab):
    lab.set_settings(optimizer="sgd", lr="0.5", batch_size="32", epochs="2")
    lab.train("start")
    assert lab.wait(30)
    ref = lecture_network()
    ref.fit(lab.data.X, np.eye(2)[lab.data.y], optimizer=cb.SGD(lr=0.5), epochs=2,
            batch_size=32)
    np.testing.assert_array_equal(lab.net.theta, ref.theta)
    snap = lab.snapshot()
    assert snap["curve"]["epoch"] == [0.0, 1.0, 2.0]
    assert snap["curve"]["loss"][2] < snap["curve"]["loss"][0]
    assert [r["layer"] for r in snap["health"]] == [0, 1]
    assert len(snap["grad_norms"]) == 2


def test_one_step_trains_one_minibatch(lab):
    lab.set_settings(batch_size=10)
    before = lab.net.theta.copy()
    lab.train("step")
    assert lab.wait(30)
    ref = lecture_network()
    ref.fit(lab.data.X[:10], np.eye(2)[lab.data.y[:10]], optimizer=cb.SGD(lr=0.5), epochs=1,
            batch_size=10, shuffle=False)
    assert not np.array_equal(lab.net.theta, before)
    np.testing.assert_array_equal(lab.net.theta, ref.theta)
    assert lab.snapshot()["epochs_done"] == pytest.approx(0.01)


def test_pause_and_close_stop_the_training_thread(lab):
    lab.set_data("digits")
    lab.set_network(hidden="64,64", activations="relu", output="softmax")
    lab.set_settings(optimizer="adam", lr="0.001", epochs=10_000, batch_size=1)
    lab.train("start")
    time.sleep(0.3)
    assert lab.running
    with pytest.raises(Conflict):       # a second tab cannot start a second run
        lab.train("start")
    with pytest.raises(Conflict):       # nor change the network under it
        lab.set_network(hidden="3")
    lab.train("pause")
    assert lab.wait(10)
    epochs = lab.snapshot()["epochs_done"]
    assert 0 < epochs < 10_000
    lab.train("start")
    time.sleep(0.2)
    lab.close()
    assert not lab.running


def test_divergence_is_a_notice_not_a_crash(lab):
    lab.set_network(hidden="8", activations="relu", output="softmax")
    lab.set_settings(optimizer="sgd", lr="10", epochs=50)
    lab.train("start")
    assert lab.wait(30)
    snap = lab.snapshot()
    json.dumps(clean(snap), allow_nan=False)       # what the page gets is JSON
    assert np.all(np.isfinite(lab.net.theta))
    assert isinstance(snap["notice"], str)


# ---- data and models --------------------------------------------------------------

@pytest.mark.parametrize("name,sizes,kind", [
    ("spirals", (2, 2, 3), "classification"), ("regression", (2, 2, 1), "regression"),
    ("digits", (64, 2, 10), "classification"), ("xor", (2, 2, 2), "classification")])
def test_changing_the_data_set_keeps_the_hidden_layers(lab, name, sizes, kind):
    lab.set_data(name)
    snap = lab.snapshot()
    assert tuple(snap["network"]["sizes"]) == sizes and snap["data"]["kind"] == kind
    assert ("surface" in snap) == (sizes[0] == 2)
    assert snap["network"]["unit_by_unit"] == (max(sizes) <= 16)
    lab.walk()                          # every data set walks


def test_a_csv_named_at_start_is_offered_and_used(tmp_path):
    path = tmp_path / "blobs.csv"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.where(X[:, 0] > 0, "cat", "dog")
    path.write_text("a,b,c,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{c}\n"
                                               for r, c in zip(X, y)))
    lab = Lab(data=str(path))
    snap = lab.snapshot()
    assert snap["data"]["name"] == "blobs.csv" and snap["data"]["classes"] == ["cat", "dog"]
    assert str(path) in snap["data"]["choices"] and snap["network"]["sizes"] == [3, 2, 2]
    lab.set_data("xor")
    lab.set_data(str(path))
    with pytest.raises(ValueError, match="not one of"):
        lab.set_data(str(tmp_path / "other.csv"))      # only files named at start


def test_model_file_round_trip_and_opening_one(tmp_path, client, lab):
    lab.set_network(hidden="3", activations="tanh", output="softmax", seed=4)
    r = client.get("/api/model")
    assert r.status_code == 200 and "playground.cbp" in r.headers["content-disposition"]
    theta = lab.net.theta.copy()
    client.post("/api/network", json={"hidden": "5"})
    r = client.post("/api/model", content=r.content,
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()["network"]["sizes"] == [2, 3, 2]
    np.testing.assert_array_equal(lab.net.theta, theta)
    # A model with 64 inputs opens on the digits.
    net = cb.Network(64, [cb.Dense(5, "relu"), cb.Dense(10, "softmax")], seed=1)
    net.save(tmp_path / "d.cbp")
    opened = Lab(cb.load(tmp_path / "d.cbp"))
    assert opened.data.name == "digits" and opened.spec.hidden == [5]


# ---- the JSON API -----------------------------------------------------------------

def test_the_page_and_its_files_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "cbackprop playground" in r.text
    for name in ("playground.js", "playground.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../lab.py").status_code == 404


@pytest.mark.parametrize("url,body,message", [
    ("/api/network", {"hidden": "0"}, "must be ≥ 1"),
    ("/api/network", {"hidden": "3,x"}, "expected a whole number"),
    ("/api/network", {"hidden": "257"}, "must be ≤ 256"),
    ("/api/network", {"hidden": "2,2,2,2,2,2,2"}, "at most 6 hidden layers"),
    ("/api/network", {"activations": "sigmoid,relu"}, "need 1 names"),
    ("/api/network", {"activations": "softmax"}, "not one of"),
    ("/api/network", {"output": "identity"}, "has classes"),
    ("/api/network", {"seed": -1}, "must be ≥ 0"),
    ("/api/network", {"colour": "red"}, "unknown field"),
    ("/api/data", {"name": "/etc/passwd"}, "not one of"),
    ("/api/settings", {"lr": "-1"}, "learning rate must be > 0"),
    ("/api/settings", {"lr": "nan"}, "finite"),
    ("/api/settings", {"lr": "100"}, "must be ≤ 10"),
    ("/api/settings", {"epochs": "10001"}, "must be ≤ 10000"),
    ("/api/settings", {"batch_size": "0"}, "must be ≥ 1"),
    ("/api/settings", {"optimizer": "lbfgs"}, "not one of"),
    ("/api/settings", {"optimizer": "adam", "momentum": "0.9"}, "momentum applies"),
    ("/api/train", {"action": "fly"}, "not one of"),
    ("/api/train", [1, 2], "JSON object"),
])
def test_bad_requests_are_400s_with_a_message(client, url, body, message):
    r = client.post(url, json=body)
    assert r.status_code == 400
    assert message in r.json()["error"]
    assert "Traceback" not in r.text


def test_bad_bodies_and_files_are_400s(client):
    json_type = {"content-type": "application/json"}
    assert client.post("/api/data", content=b"{nope", headers=json_type).json()["error"] == \
        "the request body is not JSON"
    r = client.post("/api/network", content=b"x" * (70 << 10), headers=json_type)
    assert r.status_code == 400 and "over" in r.json()["error"]
    r = client.post("/api/model", content=b"garbage",
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 400 and r.json()["error"].startswith("not a model file")
    assert "/tmp" not in r.json()["error"]
    r = client.get("/api/walk?example=-3")
    assert r.status_code == 400 and "example" in r.json()["error"]


def test_another_site_cannot_post_a_form_or_rebind_a_name(lab):
    """A cross-site form post carries text/plain or form data, never JSON; a DNS-rebound
    name arrives with its own Host header."""
    with TestClient(create_app(lab, ["127.0.0.1"]), base_url="http://127.0.0.1",
                    raise_server_exceptions=False) as c:
        r = c.post("/api/train", content=b'{"action": "start"}',
                   headers={"content-type": "text/plain"})
        assert r.status_code == 400 and "application/json" in r.json()["error"]
        r = c.post("/api/model", content=b"x", headers={"content-type": "multipart/form-data"})
        assert r.status_code == 400 and "octet-stream" in r.json()["error"]
        assert not lab.running
        assert c.get("/api/state").status_code == 200
        assert c.get("/api/state", headers={"host": "evil.example:80"}).status_code == 400


def test_a_change_during_a_run_is_a_409(client, lab):
    lab.set_data("digits")
    client.post("/api/network", json={"hidden": "64,64", "activations": "relu"})
    client.post("/api/settings", json={"optimizer": "adam", "lr": "0.001", "epochs": "10000",
                                       "batch_size": "1"})
    assert client.post("/api/train", json={"action": "start"}).status_code == 200
    r = client.post("/api/train", json={"action": "start"})
    assert r.status_code == 409 and "pause it first" in r.json()["error"]
    assert client.post("/api/data", json={"name": "xor"}).status_code == 409
    assert client.post("/api/train", json={"action": "pause"}).status_code == 200
    assert lab.wait(10)


def test_events_send_the_latest_state(client, lab):
    with client.stream("GET", "/api/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                snap = json.loads(line[6:])
                break
        lab.closed = True               # ends the stream
    assert snap["version"] == lab.version and snap["network"]["sizes"] == [2, 2, 2]


# ---- the server and the command line ----------------------------------------------

def test_the_server_serves_on_loopback_and_stopping_it_stops_training(capsys):
    handle = playground(open_browser=False, block=False)
    assert isinstance(handle, Playground) and handle.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(handle.url + "api/state", timeout=10) as r:
        assert json.load(r)["network"]["sizes"] == [2, 2, 2]
    handle.lab.set_settings(epochs=10_000, batch_size=1)
    handle.lab.train("start")
    time.sleep(0.2)
    handle.stop()
    assert not handle.lab.running and not handle.thread.is_alive()
    assert "cbackprop playground: http://127.0.0.1:" in capsys.readouterr().out


def test_another_host_is_served_with_a_warning(capsys):
    with playground(host="0.0.0.0", open_browser=False, block=False):
        pass
    assert "warning: serving the playground on 0.0.0.0" in capsys.readouterr().err


def test_blocking_run_stops_cleanly_when_the_server_exits():
    handle = {}
    original = Playground.__init__

    def grab(self, *args):
        original(self, *args)
        handle["it"] = self

    Playground.__init__ = grab
    try:
        t = threading.Thread(target=playground, kwargs={"open_browser": False})
        t.start()
        for _ in range(200):
            if "it" in handle and handle["it"].server.started:
                break
            time.sleep(0.02)
        handle["it"].server.should_exit = True      # what Ctrl-C does
        t.join(10)
        assert not t.is_alive() and handle["it"].lab.closed
    finally:
        Playground.__init__ = original


def test_the_command_line_parses_playground():
    args = build_parser().parse_args(["playground", "m.cbp", "--data", "spirals", "--port",
                                      "8123", "--host", "::1", "--no-browser"])
    assert (args.model, args.data, args.port, args.host, args.no_browser) == \
        ("m.cbp", "spirals", 8123, "::1", True)
    args = build_parser().parse_args(["playground"])
    assert (args.model, args.data, args.port, args.host, args.no_browser) == \
        (None, None, 0, "127.0.0.1", False)


def test_a_port_out_of_range_is_refused():
    with pytest.raises(ValueError, match="0..65535"):
        playground(port=70000, open_browser=False, block=False)


def test_ctrl_c_stops_the_command_cleanly_while_it_trains():
    proc = subprocess.Popen([sys.executable, "-m", "cbackprop", "playground", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    try:
        url = proc.stdout.readline().split()[2]
        post = urllib.request.Request(url + "api/settings", method="POST",
                                      data=b'{"epochs": 10000, "batch_size": 1}',
                                      headers={"Content-Type": "application/json"})
        urllib.request.urlopen(post, timeout=10).close()
        post = urllib.request.Request(url + "api/train", method="POST",
                                      data=b'{"action": "start"}',
                                      headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(post, timeout=10) as r:
            assert json.load(r)["running"]
        events = urllib.request.urlopen(url + "api/events", timeout=10)   # a page is open
        assert events.readline().startswith(b"data: ")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        events.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and err == ""


def test_the_command_line_reports_a_bad_model_in_one_line(tmp_path):
    bad = tmp_path / "bad.cbp"
    bad.write_bytes(b"nope")
    out = subprocess.run([sys.executable, "-m", "cbackprop", "playground", str(bad),
                          "--no-browser"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert out.returncode == 1 and out.stderr.startswith("cbackprop: error:")
    assert len(out.stderr.strip().splitlines()) == 1
