"""`cb.playground()` and `cbackprop playground`: see backpropagation happen.

A local web page on the library's own engine: the network drawn unit by unit,
one example walked through the forward pass, the backward pass (∂C/∂z), every
∂C/∂w = a·∂C/∂z beside a finite difference and the update θ ← θ − η∇L; and live
training with the loss curves, the decision surface and each layer's health.
Needs the `[playground]` extra (Starlette and uvicorn).

Design: `lab.py` holds the state and computes every number from the public API;
`app.py` serves it over a small JSON API with server-sent events; `static/`
holds the page, whose JavaScript only draws. This module starts the server.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import types
import webbrowser

__all__ = ["playground", "Playground"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Playground:
    """A running playground server (returned by `playground(..., block=False)`).

    Attributes
    ----------
    url : str
        The page's address.
    lab : cbackprop.playground.lab.Lab
        The network, data and training state the page shows.
    """

    def __init__(self, lab, host: str, port: int):
        try:
            import uvicorn

            from cbackprop.playground.app import create_app
        except ImportError as exc:
            raise ImportError("the playground needs the [playground] extra: pip install "
                              f"\"cbackprop[playground]\" (Starlette and uvicorn); {exc}"
                              ) from None

        self.lab = lab
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535 (0: a free one), got {port}")
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as exc:
            self.socket.close()
            raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self.socket.listen(64)
        bound = self.socket.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}/"
        hosts = ["127.0.0.1", "localhost", "[::1]", "::1"] if host in LOOPBACK else None
        config = uvicorn.Config(create_app(lab, hosts), log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]}, daemon=True,
                                       name="cbackprop-playground-server")
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the training thread, then the server."""
        self.lab.close()
        self.server.should_exit = True
        self.thread.join(5)
        self.socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self) -> str:
        return f"Playground({self.url!r})"


def playground(net=None, data=None, host: str = "127.0.0.1", port: int = 0,
               open_browser: bool = True, block: bool = True):
    """Serve the playground page and open it in the browser.

    Parameters
    ----------
    net : Network, optional
        The network to show and train. Default: the lecture's 2-2-2 sigmoid network.
    data : str, optional
        "xor", "spirals", "regression" (2-D), "digits", or a .csv / .npz file.
        Default: xor, or a built-in set that fits `net`.
    host : str, default "127.0.0.1"
        Any other address is served with a warning: whoever reaches it can drive the page.
    port : int, default 0 (a free port)
    open_browser : bool, default True
        Open the page in the user's browser; False only prints the address.
    block : bool, default True
        Serve until Ctrl-C. False (in a notebook) returns the running `Playground`;
        call its `stop()` when done.

    Returns
    -------
    Playground, when block is False (None after a blocking run ends).
    """
    from cbackprop.playground.lab import Lab

    if host not in LOOPBACK:
        print(f"warning: serving the playground on {host}, not the loopback interface: "
              "whoever can reach this address can drive it (there is no password)",
              file=sys.stderr)
    lab = Lab(net, data)
    handle = Playground(lab, host, port)
    print(f"cbackprop playground: {handle.url}" + ("  (Ctrl-C stops it)" if block else ""),
          flush=True)
    if open_browser:
        webbrowser.open(handle.url)
    if not block:
        return handle
    try:
        while handle.thread.is_alive():
            handle.thread.join(0.5)
    except KeyboardInterrupt:       # the way to stop it: not an error
        print("cbackprop playground: stopped", flush=True)
    finally:
        handle.stop()
    return None


class _CallableModule(types.ModuleType):
    """`cb.playground(...)` works whether `cbackprop.playground` names this
    subpackage (once imported) or the function."""

    def __call__(self, *args, **kwargs):
        return playground(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
