"""One ASGI layer around the app: API key, URL and body limits, a JSON log line and timings per request.

Pure ASGI (not Starlette's BaseHTTPMiddleware) because it runs on every request and must stay cheap.
"""

from __future__ import annotations

import hmac
import json
import sys
import time

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/", "/ui"})  # no data behind them
OPEN_PREFIX = "/ui/"  # the dashboard's static files: the page asks for the key and sends it on every API call


class BodyTooLarge(Exception):
    pass


def error_body(message: str, code: str) -> bytes:
    return (json.dumps({"error": message, "code": code}, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


async def send_error(send, status: int, message: str, code: str) -> None:
    body = error_body(message, code)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ServeMiddleware:
    def __init__(self, app, *, api_key: str | None, metrics, max_body: int, max_url: int, log=None) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.metrics = metrics
        self.max_body = max_body
        self.max_url = max_url
        self.log = log or sys.stderr

    def _reject(self, scope) -> tuple[int, str, str] | None:
        """(status, message, code) when the request is refused before it reaches a route."""
        if len(scope.get("query_string", b"")) + len(scope.get("raw_path", b"") or b"") > self.max_url:
            return 414, f"the URL is longer than {self.max_url:,} bytes", "uri_too_long"
        if self.key is not None and scope["path"] not in OPEN_PATHS and not scope["path"].startswith(OPEN_PREFIX):
            given = None
            for name, value in scope["headers"]:
                if name == b"x-api-key":
                    given = value
                elif name == b"authorization" and value[:7].lower() == b"bearer ":
                    given = value[7:].strip()
            if given is None:
                return 401, "this server needs an API key: send it as X-API-Key or Authorization: Bearer", "unauthorized"
            if not hmac.compare_digest(given, self.key):
                return 401, "wrong API key", "unauthorized"
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    return 400, "malformed Content-Length header", "bad_request"
                if size > self.max_body:
                    return 413, f"the request body is over {self.max_body:,} bytes", "payload_too_large"
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_tracked(message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        received = 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge
            return message

        try:
            refused = self._reject(scope)
            if refused is not None:
                await send_error(send_tracked, *refused)
            else:
                await self.app(scope, receive_limited, send_tracked)
        except BodyTooLarge:
            if not state["started"]:
                await send_error(send_tracked, 413, f"the request body is over {self.max_body:,} bytes",
                                 "payload_too_large")
        except Exception as exc:  # a bug: one JSON 500, no traceback to the client
            if not state["started"]:
                await send_error(send_tracked, 500, "internal error; see the server log", "internal")
            self._write({"level": "error", "path": scope["path"][:300], "error": f"{type(exc).__name__}: {exc}"[:1000]})
        finally:
            seconds = time.perf_counter() - t0
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            run = scope.get("recsys.run", "")
            if self.metrics is not None:
                self.metrics.observe(endpoint, run, state["status"], seconds)
            line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "method": scope["method"],
                    "path": scope["path"][:300], "status": state["status"], "ms": round(seconds * 1000, 3)}
            if run:
                line["run"] = run
            self._write(line)

    def _write(self, obj) -> None:
        try:
            self.log.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self.log.flush()
        except (OSError, ValueError):  # stderr closed: never fail a request over its log line
            pass
