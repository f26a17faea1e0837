"""The playground's web layer: a Starlette app over a `Lab`.

Routes (JSON in, JSON out; the page's JavaScript only draws what they return):

    GET  /                 the page          GET  /static/...    its JS and CSS
    GET  /api/state        everything drawn  GET  /api/events    the same, as server-sent
                                                                  events: the latest state,
                                                                  at most 10 a second
    GET  /api/walk?example=lecture|ROW       one example through the chain rule
    POST /api/network {hidden, activations, output, seed}
    POST /api/data {name}   POST /api/settings {optimizer, lr, momentum, batch_size, epochs}
    POST /api/train {action: start|pause|epoch|step}
    GET  /api/model        the network as a model file     POST /api/model   open one

A bad value is a 400 with {"error": message}; a change while a run is going a
409; anything unexpected a 500 with a one-line message, never a traceback.
Bodies must be declared JSON (or octet-stream for a model file), and on the
loopback interface the Host header must name it: a page on another site can
neither post a form to the playground nor reach it by rebinding a name.
"""

from __future__ import annotations

import asyncio
import json
import math
import os

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cbackprop.playground.lab import MAX_MODEL_BYTES, Conflict, Lab

STATIC = os.path.join(os.path.dirname(__file__), "static")
#: The largest JSON body a request may carry.
MAX_JSON_BYTES = 64 << 10
#: Seconds between two looks at the lab for the event stream.
EVENT_PERIOD = 0.1


def clean(value):
    """JSON-ready: non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def reply(value, status: int = 200) -> JSONResponse:
    return JSONResponse(clean(value), status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > limit):
        raise ValueError(f"the request body is over {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ValueError(f"the request body is over {limit} bytes")
    return body


def require_type(request: Request, media_type: str) -> None:
    """Refuse a body of another type. Browsers send JSON or octet-stream to another
    site only after asking it (CORS preflight), which this server never grants: so
    a page on another site cannot drive the playground with a plain form post."""
    got = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if got != media_type:
        raise ValueError(f"expected a body of type {media_type}, got {got or 'none'}")


async def read_json(request: Request, allowed: tuple[str, ...]) -> dict:
    require_type(request, "application/json")
    body = await read_body(request, MAX_JSON_BYTES)
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected "
                         f"{', '.join(allowed)}")
    return data


def create_app(lab: Lab, allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette app serving `lab`; with `allowed_hosts`, requests naming another
    Host are refused (a page on another site that rebinds its name to 127.0.0.1)."""

    async def page(request):
        return FileResponse(os.path.join(STATIC, "index.html"),
                            headers={"Cache-Control": "no-store"})

    async def state(request):
        return reply(await run_in_threadpool(lab.snapshot))

    async def events(request):
        async def stream():
            last = None
            while not lab.closed:
                if lab.version != last:
                    last = lab.version
                    snap = await run_in_threadpool(lab.snapshot)
                    yield f"data: {json.dumps(clean(snap))}\n\n"
                await asyncio.sleep(EVENT_PERIOD)
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def walk(request):
        example = request.query_params.get("example", "lecture")
        return reply(await run_in_threadpool(lab.walk, example))

    def changer(method, fields):
        async def endpoint(request):
            args = await read_json(request, fields)
            await run_in_threadpool(method, **args)
            return reply(await run_in_threadpool(lab.snapshot))
        return endpoint

    async def model(request):
        if request.method == "GET":
            blob = await run_in_threadpool(lab.model_bytes)
            return Response(blob, media_type="application/octet-stream", headers={
                "Content-Disposition": 'attachment; filename="playground.cbp"'})
        require_type(request, "application/octet-stream")
        blob = await read_body(request, MAX_MODEL_BYTES)
        await run_in_threadpool(lab.load_model, blob)
        return reply(await run_in_threadpool(lab.snapshot))

    async def bad_value(request, exc):
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return reply({"error": message}, 400)

    async def conflict(request, exc):
        return reply({"error": str(exc)}, 409)

    async def http_error(request, exc):
        return reply({"error": exc.detail}, exc.status_code)

    async def unexpected(request, exc):
        return reply({"error": f"internal error: {type(exc).__name__}"}, 500)

    routes = [
        Route("/", page),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/walk", walk),
        Route("/api/network", changer(lab.set_network,
                                      ("hidden", "activations", "output", "seed")),
              methods=["POST"]),
        Route("/api/data", changer(lab.set_data, ("name",)), methods=["POST"]),
        Route("/api/settings", changer(lab.set_settings, ("optimizer", "lr", "momentum",
                                                          "batch_size", "epochs")),
              methods=["POST"]),
        Route("/api/train", changer(lab.train, ("action",)), methods=["POST"]),
        Route("/api/model", model, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {ValueError: bad_value, TypeError: bad_value, Conflict: conflict,
                HTTPException: http_error, Exception: unexpected}
    middleware = [] if allowed_hosts is None else [
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)
