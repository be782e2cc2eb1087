"""The HTTP endpoint for probes and Prometheus: /healthz, /readyz and /metrics.

It runs in a daemon thread with the standard library's WSGI server, so a busy or stuck event
loop cannot hide itself: /healthz fails when the loop's heartbeat is older than ``stale_after``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Health:
    """Liveness (the event loop beats) and readiness (the first list of every watch is done)."""

    def __init__(self, *, stale_after: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._stale_after = stale_after
        self._beat = clock()
        self.ready = False

    def beat(self) -> None:
        self._beat = self._clock()

    def alive(self) -> bool:
        return self._clock() - self._beat < self._stale_after


def serve(*, host: str, port: int, health: Health, registry: CollectorRegistry) -> WSGIServer:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        checks: dict[str, Callable[[], bool]] = {
            "/healthz": health.alive,
            "/livez": health.alive,
            "/readyz": lambda: health.ready,
        }
        check = checks.get(path)
        if check is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        ok = check()
        start_response(
            "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
        )
        return [b"ok\n" if ok else b"not ok\n"]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
