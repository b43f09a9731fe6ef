"""One ASGI layer around the app: API key, URL and body limits, a JSON log line and timings per request.

Pure ASGI (not Starlette's BaseHTTPMiddleware) because it runs on every request and must stay cheap.
"""

from __future__ import annotations

import hmac
import json
import logging
import sys
import time

from starlette.requests import ClientDisconnect

OPEN_PATHS = frozenset({"/health", "/", "/ui"})  # liveness, and the dashboard's page (static, no data)
OPEN_PREFIX = "/ui/"  # the dashboard's static files: the page asks for the key and sends it on every API call
# Pages a browser opens itself: with a key their 401 asks for HTTP Basic credentials (any user name, the key as
# the password), so the browser prompts once and then sends them with every request to the server, Swagger's
# fetch of /openapi.json and its "Try it out" calls included. API endpoints answer 401 with a Bearer challenge,
# which browsers do not prompt for (the dashboard's own calls send X-API-Key).
BROWSER_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
REALM = 'realm="recsys serve"'


class BodyTooLarge(Exception):
    pass


CLIENT_CLOSED = 499  # the status logged and counted for a request whose client went away mid-body (nginx's code)


def error_body(message: str, code: str) -> bytes:
    return (json.dumps({"error": message, "code": code}, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


async def send_error(send, status: int, message: str, code: str, headers: tuple = ()) -> None:
    body = error_body(message, code)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def basic_password(value: bytes) -> bytes | None:
    """The password of an `Authorization: Basic` value (base64 of user:password), None when malformed."""
    import base64
    import binascii

    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return password if sep else None


class ServeMiddleware:
    def __init__(self, app, *, api_key: str | None, metrics, max_body: int, max_url: int, log=None) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.metrics = metrics
        self.max_body = max_body
        self.max_url = max_url
        self.log = log or sys.stderr

    def _reject(self, scope) -> tuple | None:
        """(status, message, code[, headers]) when the request is refused before it reaches a route."""
        if len(scope.get("query_string", b"")) + len(scope.get("raw_path", b"") or b"") > self.max_url:
            return 414, f"the URL is longer than {self.max_url:,} bytes", "uri_too_long"
        path = scope["path"]
        if self.key is not None and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIX):
            # Every key the request carries is checked, and any one that matches lets it in: taking the last
            # header seen made the answer depend on header order (a stale X-API-Key beside the browser's Basic
            # credentials passed or failed as the client happened to order them).
            given = []
            for name, value in scope["headers"]:
                if name == b"x-api-key":
                    given.append(value)
                elif name == b"authorization":
                    scheme = value[:7].lower()
                    if scheme == b"bearer ":
                        given.append(value[7:].strip())
                    elif scheme[:6] == b"basic ":
                        password = basic_password(value)
                        if password is not None:
                            given.append(password)
            challenge = ((b"www-authenticate", f'Basic {REALM}, charset="UTF-8"'.encode()),) \
                if path in BROWSER_PATHS else ((b"www-authenticate", f"Bearer {REALM}".encode()),)
            if not given:
                return (401, "this server needs an API key: send it as X-API-Key, Authorization: Bearer, or as the "
                        "password of HTTP Basic authentication", "unauthorized", challenge)
            if not any([hmac.compare_digest(key, self.key) for key in given]):  # (a list: compare every one)
                return 401, "wrong API key", "unauthorized", challenge
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
        method = scope["method"]
        if method == "HEAD":  # a GET without its body (RFC 9110), as /docs already had: every GET route was a 405
            scope = {**scope, "method": "GET"}

        async def send_tracked(message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            elif method == "HEAD" and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}  # (uvicorn drops it too; the headers, Content-Length included, stay)
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
        except ClientDisconnect:  # the client hung up before its body was in: nobody to answer, and not our error
            # (it was logged and counted as a 500 with an error line: a false alarm per dropped upload). Starlette's
            # error layer may have "sent" its 500 already: to a closed connection, so 499 all the same
            state["status"] = CLIENT_CLOSED
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
            line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "method": method,
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


class JsonLogFormatter(logging.Formatter):
    """uvicorn's own log records (e.g. "Invalid HTTP request received." for a request line it cannot parse) as one
    JSON line each, like the request lines: they were plain `WARNING:  ...` lines among the JSON ones."""

    def format(self, record) -> str:
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                "level": record.levelname.lower(), "message": record.getMessage()[:1000]}
        if record.exc_info and record.exc_info[1] is not None:  # the exception, never its traceback
            exc = record.exc_info[1]
            line["error"] = f"{type(exc).__name__}: {exc}"[:1000]
        return json.dumps(line, ensure_ascii=False)


UVICORN_LOG_CONFIG = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"json": {"()": "recsys_cli.serve.middleware.JsonLogFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
                "uvicorn.error": {"level": "WARNING"}, "uvicorn.access": {"level": "WARNING"}},
}
