"""The playground page in a real headless browser (Debian's chromium and
chromium-driver, driven by Selenium): what it shows is what the library computes.

Set CBACKPROP_SCREENSHOT=path.png to keep the mid-training screenshot (the
README's docs/playground.png is made that way)."""

import os
import shutil

import numpy as np
import pytest

import cbackprop as cb

pytest.importorskip("starlette", reason="the [playground] extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the [playground] extra (uvicorn) is not installed")
webdriver = pytest.importorskip("selenium.webdriver",
                                reason="selenium (the [test] extra) is not installed")

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from cbackprop.playground import playground  # noqa: E402
from cbackprop.playground.lab import LECTURE_X, LECTURE_Y  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install "
                "chromium chromium-driver; .ci/run installs them)", allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    handle = playground(open_browser=False, block=False)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def browser(server):
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--hide-scrollbars"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def page(server, browser):
    """The page, fresh, on the lecture's network and xor with the default settings."""
    server.lab.pause()
    server.lab.wait(10)
    server.lab.set_data("xor")
    server.lab.set_network(hidden=[2], activations=["sigmoid"], output="sigmoid", seed=0)
    server.lab.set_settings(optimizer="sgd", lr=0.5, momentum=0, batch_size=32, epochs=300)
    browser.get(server.url)
    wait_for(browser, lambda d: text(d, "step-title").startswith("Step 1/"))
    browser.get_log("browser")          # start each test with an empty console
    return browser


def wait_for(driver, condition, timeout=20):
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def text(driver, element_id) -> str:
    """An element's text, read in one step (the status line is redrawn many times a second)."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : ''",
        element_id)


def number(text: str) -> float:
    return float(text.split("=")[-1].replace("−", "-").strip())


def close(shown: float, exact: float) -> bool:
    """Equal to the 6 significant digits the page shows."""
    return abs(shown - exact) <= 5e-6 * abs(exact) + 1e-300


def unit_values(driver, layer, unit, cls):
    return [number(e.text) for e in driver.find_elements(
        By.CSS_SELECTOR, f'g.unit[data-layer="{layer}"][data-unit="{unit}"] text.{cls}')]


def click(driver, element_id):
    driver.find_element(By.ID, element_id).click()


def go_to(driver, title_part):
    for _ in range(20):
        if title_part in driver.find_element(By.ID, "step-title").text:
            return
        click(driver, "next")
    raise AssertionError(f"no step {title_part!r}")


def severe(driver):
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_the_page_loads_with_no_console_errors(server, page):
    assert page.title == "cbackprop playground"
    assert len(page.find_elements(By.CSS_SELECTOR, "g.unit")) == 6
    assert len(page.find_elements(By.CSS_SELECTOR, "line.edge")) == 8
    assert text(page, "loss-now") != "–"     # the untrained loss
    assert severe(page) == []


def test_the_walk_shows_what_trace_computes(server, page):
    net = server.lab.net
    records = net.trace(np.array(LECTURE_X), np.array(LECTURE_Y))
    # Forward pass, layer by layer: z and a appear as the walk reaches each layer.
    go_to(page, "Forward pass, layer 1")
    assert unit_values(page, 2, 0, "val-z") == []
    labels = page.find_elements(By.CSS_SELECTOR, 'text.edge-label[data-layer="1"]')
    assert {number(e.text) for e in labels} == {number(f"{v:.6g}") for v in LECTURE_X}
    go_to(page, "Forward pass, layer 2")
    for layer, rec in enumerate(records, start=1):
        for j in range(2):
            (z,), (a,) = unit_values(page, layer, j, "val-z"), unit_values(page, layer, j,
                                                                            "val-a")
            assert close(z, rec.z[j]) and close(a, rec.a[j]), (layer, j)
    # Backward pass, from the output layer back.
    go_to(page, "Backward pass, output layer 2")
    assert unit_values(page, 1, 0, "val-dcdz") == []
    go_to(page, "Backward pass, layer 1")
    for layer, rec in enumerate(records, start=1):
        for j in range(2):
            (d,) = unit_values(page, layer, j, "val-dcdz")
            assert close(d, rec.dC_dz[j]), (layer, j)
    # Hovering a hidden unit shows its sum σ'(z)·[w·∂C/∂z′ + w·∂C/∂z″] with the numbers.
    unit = page.find_element(By.CSS_SELECTOR, 'g.unit[data-layer="1"][data-unit="0"] circle')
    ActionChains(page).move_to_element(unit).perform()
    tip = wait_for(page, lambda d: d.find_element(By.ID, "tooltip").text or False)
    W2 = net.params[1][0]
    assert "∂C/∂z = σ'(z)·[Σ w·∂C/∂z′]" in tip
    for value in (W2[0, 0], W2[0, 1], records[1].dC_dz[0], records[0].dC_dz[0]):
        assert f"{value:.6g}".lstrip("-")[:6] in tip
    # ∂C/∂w = a·∂C/∂z for every weight, on the edges and in the table, beside finite differences.
    go_to(page, "Gradients")
    for layer, rec in enumerate(records, start=1):
        for i in range(2):
            for j in range(2):
                row = f'tr[data-param="w"][data-layer="{layer}"][data-i="{i}"][data-j="{j}"]'
                g = number(page.find_element(By.CSS_SELECTOR, row + " td.dcdw").text)
                fd = number(page.find_element(By.CSS_SELECTOR, row + " td.fd").text)
                edge = page.find_element(By.CSS_SELECTOR, f'text.edge-label[data-layer='
                                         f'"{layer}"][data-i="{i}"][data-j="{j}"]')
                assert close(g, rec.dC_dW[i, j]) and close(number(edge.text), rec.dC_dW[i, j])
                assert abs(fd - g) <= 1e-5 * abs(g) + 1e-9
    # The update θ ← θ − η∇L.
    go_to(page, "Update")
    W1 = net.params[0][0]
    row = 'tr[data-param="w"][data-layer="1"][data-i="0"][data-j="0"]'
    assert close(number(page.find_element(By.CSS_SELECTOR, row + " td.wnew").text),
                 W1[0, 0] - 0.5 * records[0].dC_dW[0, 0])
    assert severe(page) == []


def test_two_epochs_of_xor_from_the_page_are_a_fit(server, page):
    before = number(text(page, "loss-now"))
    for field, value in (("lr", "0.5"), ("batch_size", "32"), ("epochs", "2")):
        box = page.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    Select(page.find_element(By.ID, "optimizer")).select_by_value("sgd")
    click(page, "start")
    wait_for(page, lambda d: text(d, "epochs-done") == "2"
             and "idle" in text(d, "status"))
    after = number(text(page, "loss-now"))
    assert after < before
    ref = cb.Network(2, [cb.Dense(2, "sigmoid"), cb.Dense(2, "sigmoid")], loss="mse",
                     dtype="float64", seed=0, n_threads=1)
    X, y = cb.datasets.load_dataset("xor")
    ref.fit(X, np.eye(2)[y], optimizer=cb.SGD(lr=0.5), epochs=2, batch_size=32)
    np.testing.assert_array_equal(server.lab.net.theta, ref.theta)
    assert close(after, server.lab.snapshot()["curve"]["loss"][-1])
    assert severe(page) == []


def test_changing_the_shape_and_the_data_set(server, page):
    for field, value in (("hidden", "3,4"), ("activations", "relu,tanh")):
        box = page.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    Select(page.find_element(By.ID, "output")).select_by_value("softmax")
    click(page, "build")
    wait_for(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "g.unit")) == 2 + 3 + 4 + 2)
    assert "Built a 2-3-4-2 network" in text(page, "message")
    assert server.lab.net.sizes == (2, 3, 4, 2)
    Select(page.find_element(By.ID, "data")).select_by_value("spirals")
    wait_for(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "g.unit")) == 2 + 3 + 4 + 3)
    Select(page.find_element(By.ID, "data")).select_by_value("digits")
    wait_for(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "rect.layer-box")) == 4)
    wait_for(page, lambda d: "2-D data only" in text(d, "surface-title"))
    assert server.lab.net.sizes == (64, 3, 4, 10)
    assert severe(page) == []


def test_a_bad_value_is_refused_with_a_message(server, page):
    box = page.find_element(By.ID, "lr")
    box.clear()
    box.send_keys("-1")
    click(page, "start")
    wait_for(page, lambda d: "learning rate must be > 0" in text(d, "message"))
    assert not server.lab.running and server.lab.settings.lr == 0.5
    box = page.find_element(By.ID, "hidden")
    box.clear()
    box.send_keys("2,zero")
    click(page, "build")
    wait_for(page, lambda d: "expected a whole number" in text(d, "message"))
    assert server.lab.net.sizes == (2, 2, 2)
    # The browser reports the 400 responses themselves; nothing else went wrong.
    assert all("400" in e["message"] for e in severe(page))


def test_a_screenshot_mid_training(server, page, tmp_path):
    lab = server.lab
    lab.set_data("xor")
    lab.set_network(hidden=[4], activations=["tanh"], output="softmax", seed=3)
    lab.set_settings(optimizer="adam", lr=0.01, batch_size=4, epochs=10_000)
    page.get(server.url)
    wait_for(page, lambda d: text(d, "step-title").startswith("Step 1/"))
    go_to(page, "Backward pass, layer 1")       # z, a and ∂C/∂z on every unit
    click(page, "start")
    wait_for(page, lambda d: float(text(d, "epochs-done") or 0) >= 60, 60)
    path = os.environ.get("CBACKPROP_SCREENSHOT") or str(tmp_path / "playground.png")
    assert "training" in text(page, "status")
    page.save_screenshot(path)
    click(page, "pause")
    wait_for(page, lambda d: "idle" in text(d, "status"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert severe(page) == []
