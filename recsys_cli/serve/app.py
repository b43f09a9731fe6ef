"""The FastAPI app of `recsys serve`: each endpoint parses the request, makes one call into
`recsys_cli.api` and returns the CLI's JSON rows (raw MovieLens ids, titles, fallback labels).

    app = serve_app(["svd-ml-100k-random"])            # loads the runs, builds the app
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys_cli import __version__
from recsys_cli.errors import ArtifactError, DataError, RecsysError, UnknownIdError, UsageError
from recsys_cli.serve.metrics import ServerMetrics
from recsys_cli.serve.middleware import BodyTooLarge, ServeMiddleware, error_body
from recsys_cli.serve.registry import LoadedRun, RunRegistry
from recsys_cli.serve.schemas import (
    PREDICT_PARAMS,
    RECOMMEND_PARAMS,
    SIMILAR_PARAMS,
    ApiError,
    PathId,
    PredictBody,
    RecommendBody,
    body_openapi,
    openapi_params,
    parse_body,
    parse_query,
)

MAX_BATCH = 10_000
MAX_BODY = 1 << 20  # 1 MiB: a full batch of 10,000 ids is ~80 KB
MAX_URL = 8192
INLINE_USERS = 32  # smaller requests are answered on the event loop (sub-millisecond); larger ones in a thread
INLINE_BODY_BYTES = 1024  # a POST body up to this is parsed at once; a larger one when it has a compute slot
SCORE_BLOCK_BYTES = 1 << 18  # scores a request holds at once: this, or a quarter of the run's arrays if more (with
# one large request per core, scores then stay within the arrays' size); blocks of at least 32 users. A 1,000-user
# batch at 59,047 items held 236 MB at once before (64 MB blocks, two at a time); 39 MB blocks take ~5% longer

ROW_EXAMPLE = [{"user_id": 1, "rank": 1, "item_id": 50, "title": "Star Wars", "score": 4.71}]



def _status(exc: RecsysError) -> tuple[int, str]:
    if isinstance(exc, UnknownIdError):
        return 404, "unknown_id"
    if isinstance(exc, ArtifactError):
        return 404, "unknown_run"
    if isinstance(exc, UsageError):
        return 422, "invalid"
    if isinstance(exc, DataError):
        return 422, "data"
    return 500, "internal"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


try:  # 20x faster than json on a 1,000-user batch (10,000 rows: 0.9 ms instead of 19.5 ms); NaN -> null as well
    import orjson
except ImportError:  # pragma: no cover - orjson is part of the serve extra
    orjson = None


NOTE_HEADER = "X-Recsys-Note"  # what the CLI says on stderr beside the same JSON


def _noted(response: Response, predictions) -> Response:
    if predictions.time_ignored:
        response.headers[NOTE_HEADER] = (f"{predictions.run} has no time part (only fm with its time group has one): "
                                         "the times are ignored")
    return response


def _json(obj: Any, status: int = 200) -> Response:
    if orjson is not None:
        try:
            return Response(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE), status_code=status,
                            media_type="application/json")
        except TypeError:  # something orjson does not take (an int over 64 bits ...): the json module below
            pass
    try:
        body = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN/inf somewhere: null, as the CLI prints it
        body = json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False)
    return Response((body + "\n").encode(), status_code=status, media_type="application/json")


def _dumps_list(rows: list) -> bytes:
    """A JSON array, compact (what `_json` sends): orjson where it can, else the json module (NaN -> null)."""
    if orjson is not None:
        try:
            return orjson.dumps(rows)
        except TypeError:
            pass
    try:
        return json.dumps(rows, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        return json.dumps(_clean(rows), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


STREAM_CHUNK = 64 << 10  # a large batch answer is sent in pieces of about this size


def _join_lists(parts: list[bytes]) -> Response:
    """The response holding the concatenation of JSON arrays given without their brackets (b"" = empty).

    Up to STREAM_CHUNK it is one body; a larger answer (a 1,000-user batch is ~1.1 MB) is streamed in
    ~64 KB pieces with its Content-Length, the same bytes: joining it whole made two more copies of it
    (and the HTTP layer a third) while the pieces were still held.
    """
    parts = [p for p in parts if p]
    size = 3 + sum(map(len, parts)) + max(0, len(parts) - 1)
    if size <= STREAM_CHUNK:
        return Response(b"".join([b"[", b",".join(parts), b"]\n"]), media_type="application/json")

    async def pieces():
        chunk, held = [b"["], 1
        for k, part in enumerate(parts):
            if k:
                chunk.append(b",")
            chunk.append(part)
            held += len(part) + 1
            if held >= STREAM_CHUNK:
                yield b"".join(chunk)
                chunk, held = [], 0
        chunk.append(b"]\n")
        yield b"".join(chunk)
        # sent: what the answer's pieces and the HTTP layer's buffers took goes back to the system (see _then_trim)
        del chunk
        trim = _TRIM.get("malloc_trim")
        if trim is not None:
            trim(0)

    from starlette.responses import StreamingResponse

    return StreamingResponse(pieces(), media_type="application/json", headers={"content-length": str(size)})


def _example(example: Any, description: str = "OK") -> dict:
    return {200: {"description": description, "content": {"application/json": {"example": example}}}}


def create_app(registry: RunRegistry, *, api_key: str | None = None, metrics: ServerMetrics | None = None,
               max_batch: int = MAX_BATCH, max_body: int = MAX_BODY, max_url: int = MAX_URL,
               handle_sighup: bool = False, ui: bool = False, log=None, supervisor_pid: int | None = None) -> FastAPI:
    """The app over already-loaded runs (see `serve_app`); ui=True also serves the dashboard page at /ui/."""
    from contextlib import asynccontextmanager

    from recsys_cli.api import queries

    metrics = metrics or ServerMetrics()
    cache = registry.cache

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if handle_sighup:  # `kill -HUP PID` reloads changed runs, like POST /admin/reload
            import asyncio
            import signal

            loop = asyncio.get_running_loop()
            try:
                loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, registry.reload))
            except (NotImplementedError, RuntimeError, ValueError, AttributeError):
                pass
        yield

    app = FastAPI(
        title="recsys", version=__version__, lifespan=lifespan,
        description="Recommendations from trained recsys runs: the JSON rows of `recsys recommend/predict/"
                    "similar`, raw MovieLens ids, titles and fallback labels. Name the run with `run` (optional "
                    "when the server has a default run). Errors are `{\"error\": ..., \"code\": ...}`.",
    )

    def openapi() -> dict:
        # The key is checked by ServeMiddleware, not by a per-route dependency (it cost ~20 us a request);
        # the document still declares it so /docs has an Authorize button.
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {})["securitySchemes"] = {"APIKeyHeader": {
                "type": "apiKey", "in": "header", "name": "X-API-Key",
                "description": "Needed on every endpoint but /health when the server has a key."}}
            doc["security"] = [{"APIKeyHeader": []}]
            schemas = doc["components"].setdefault("schemas", {})
            for model in (RecommendBody, PredictBody):  # the bodies the POST endpoints parse themselves
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi

    @app.exception_handler(RecsysError)
    async def _recsys_error(request: Request, exc: RecsysError):
        status, code = _status(exc)
        return Response(error_body(str(exc)[:1000], code), status, media_type="application/json")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge):
        # a body without Content-Length (chunked) found too large while read: answered here, before Starlette's
        # error layer turns the exception into a plain-text 500 (which ServeMiddleware could no longer replace)
        return Response(error_body(f"the request body is over {max_body:,} bytes", "payload_too_large"), 413,
                        media_type="application/json")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return Response(error_body(str(exc), exc.code), exc.status, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return Response(error_body("the body is not valid JSON", "malformed_json"), 400,
                            media_type="application/json")
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = f"{where}: {first.get('msg', 'invalid')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        return Response(error_body(message[:500], "invalid"), 422, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        message = "no such endpoint; see /docs" if exc.status_code == 404 else str(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # `Allow` (RFC 9110) was dropped here; Starlette's named only the first route
            headers["Allow"] = allowed_methods(request.scope)  # of the path (GET for /recommend, which takes POST)
        return Response(error_body(message, code), exc.status_code, headers=headers or None,
                        media_type="application/json")

    def allowed_methods(scope) -> str:
        from starlette.routing import Match

        methods: set[str] = set()
        for route in app.routes:
            if getattr(route, "methods", None) and route.matches(scope)[0] != Match.NONE:
                methods |= route.methods
        if "GET" in methods:
            methods.add("HEAD")  # ServeMiddleware answers HEAD as GET
        return ", ".join(m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS") if m in methods)

    def use(request: Request, run: str | None) -> LoadedRun:
        loaded = registry.get(run)
        request.scope["recsys.run"] = loaded.name  # the metrics label: only names of served runs
        return loaded

    def check_n(loaded: LoadedRun, n: int) -> int:
        if not 1 <= n <= loaded.n_items:
            raise ApiError(422, f"n must be between 1 and {loaded.n_items:,} (the catalogue), got {n}", "invalid")
        return n

    def check_batch(count: int, what: str) -> None:
        if count > max_batch:
            raise ApiError(413, f"{count:,} {what} in one request; at most {max_batch:,} (--max-batch)",
                           "payload_too_large")

    heavy: dict[str, Any] = {}

    def compute_slots():
        """At most one large request per core computes at a time (each batch holds up to ~64 MB of scores: more
        at once than there are cores only adds memory, not speed). One semaphore per event loop (test clients
        may start several)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if heavy.get("loop") is not loop:
            heavy["loop"], heavy["sem"] = loop, asyncio.Semaphore(max(1, os.cpu_count() or 1))
        return heavy["sem"]

    async def call(size: int, fn, *args, held: bool = False, **kwargs):
        """Small requests on the event loop; large ones in a thread, in a compute slot (already `held`, or
        waited for here)."""
        if size <= INLINE_USERS:
            return fn(*args, **kwargs)
        if held:
            return await run_in_threadpool(_then_trim, fn, *args, **kwargs)
        async with compute_slots():
            return await run_in_threadpool(_then_trim, fn, *args, **kwargs)

    async def read_body(request: Request, model, answer):
        """`answer(body, held)` for the request's body validated as `model`. A large body is parsed only once
        it has a compute slot: requests waiting for one hold their raw bytes (~6 KB for 1,000 users), not the
        parsed JSON and model (~50 KB of Python objects each)."""
        raw = await request.body()
        if len(raw) <= INLINE_BODY_BYTES:
            return await answer(parse_body(model, raw), False)
        async with compute_slots():
            return await answer(parse_body(model, raw), True)

    def recommend_users(loaded: LoadedRun, users: list[int], n: int, exclude_seen: bool, use_cache: bool,
                        explain: bool = False) -> Response:
        """Rows for each user, from the cache where it has them; one API call for the rest.

        The cache holds each user's rows as encoded JSON (the array's inside, without brackets): a third of
        the memory of the row dicts, nothing for the garbage collector to walk, and a hit is copied, not
        re-encoded. The response is those pieces joined, byte for byte what encoding all rows at once gives.
        """
        def key(u: int) -> tuple:
            return (loaded.name, loaded.generation, u, n, exclude_seen, explain)

        per_user: dict[int, bytes] = {}
        misses = []
        for u in dict.fromkeys(users):
            part = cache.get(key(u)) if use_cache else None
            if part is None:
                misses.append(u)
            else:
                per_user[u] = part
        if use_cache and cache.size:
            if per_user:
                metrics.cache_hits.labels(loaded.name).inc(len(per_user))
            if misses:
                metrics.cache_misses.labels(loaded.name).inc(len(misses))
        if misses:
            block = max(32, max(SCORE_BLOCK_BYTES, loaded.arrays_bytes // 4) // (4 * max(1, loaded.n_items)))
            try:
                recs = queries.recommend(loaded.run, misses, n=n, exclude_seen=exclude_seen, explain=explain,
                                         data_dir=registry.data_dir, batch_size=block)
            except RecsysError:
                if not explain:
                    raise
                # the lists do not depend on their explanations: without the run's training data, rows get
                # "reasons": null instead of the whole request failing
                recs = queries.recommend(loaded.run, misses, n=n, exclude_seen=exclude_seen, batch_size=block)
                recs.reasons = [None] * sum(1 for _ in recs.rows())
            fresh = dict.fromkeys(misses, b"")  # a user with no eligible item has no rows
            # rows come user by user: each user's are encoded as they end, so a batch never holds all its dicts,
            # and go into the cache at once, so the entry they replace is freed now, not after the whole batch
            for u, rows in itertools.groupby(recs.rows(), key=lambda row: row["user_id"]):
                fresh[u] = part = _dumps_list(list(rows))[1:-1]
                cache.put(key(u), part)
            for u, part in fresh.items():
                if not part:
                    cache.put(key(u), part)
            per_user.update(fresh)
        return _join_lists([per_user[u] for u in users])

    def wants_cache(request: Request) -> bool:
        return "no-cache" not in request.headers.get("cache-control", "")

    # ----- liveness and runs ---------------------------------------------------------------------
    @app.get("/health", tags=["server"], responses=_example(
        {"status": "ok", "version": __version__, "runs": ["svd-ml-100k-random"], "default": "svd-ml-100k-random",
         "uptime_seconds": 12.5}))
    async def health():
        """Liveness: the version and the runs loaded (never needs the API key)."""
        return _json({"status": "ok", "version": __version__, "runs": [r.name for r in registry.loaded()],
                      "default": registry.default, "uptime_seconds": round(time.time() - registry.started, 3)})

    @app.get("/ready", tags=["server"], responses=_example({"ready": True, "runs": 1}))
    async def ready():
        """Readiness: 200 once every run is loaded (they are loaded before the port opens)."""
        n = len(registry.loaded())
        return _json({"ready": n == len(registry.names), "runs": n}, 200 if n == len(registry.names) else 503)

    @app.get("/runs", tags=["runs"])
    async def runs():
        """The served runs with their model, dataset, split, metrics and when they were loaded."""
        out = []
        for r in registry.loaded():
            m = r.run.manifest
            out.append({"run": r.name, "model": m.model, "dataset": m.dataset, "split": m.split,
                        "created": m.created, "default": r.name == registry.default, "loaded_at": r.loaded_at,
                        "metrics": m.metrics})
        return _json(out)

    @app.get("/runs/{run}", tags=["runs"])
    async def run_detail(request: Request, run: str):
        """A run's manifest (config, dataset, seed, metrics ...) and its load state."""
        loaded = use(request, run)
        return _json({**loaded.run.manifest.to_dict(), "loaded_at": loaded.loaded_at,
                      "load_seconds": round(loaded.load_seconds, 4), "generation": loaded.generation,
                      "last_reload_error": registry.last_error(loaded.name), "worker_pid": os.getpid()})

    # ----- questions to a run ----------------------------------------------------------------------
    @app.get("/recommend", tags=["recommend"], responses=_example(ROW_EXAMPLE), **openapi_params(*RECOMMEND_PARAMS))
    async def recommend(request: Request):
        """Top-n for one user, as `recsys recommend RUN --user U --format json` prints it. An unknown user gets
        the most popular items, labelled `"fallback": "popularity"`. Send `Cache-Control: no-cache` to skip the cache.
        """
        user, n, run, exclude_seen, explain = parse_query(request, RECOMMEND_PARAMS)
        loaded = use(request, run)
        n = check_n(loaded, n)
        return recommend_users(loaded, [user], n, exclude_seen, wants_cache(request), explain)

    @app.post("/recommend", tags=["recommend"], responses=_example(ROW_EXAMPLE), **body_openapi(RecommendBody))
    async def recommend_batch(request: Request):
        """A batch of users (`users`), or one new user's `ratings` folded in (rows have `user_id: -1` and
        `fallback: "fold_in"`), exactly one of the two."""
        return await read_body(request, RecommendBody, lambda body, held: recommend_body(request, body, held))

    async def recommend_body(request: Request, body: RecommendBody, held: bool):
        loaded = use(request, body.run)
        n = check_n(loaded, body.n)
        if (body.users is None) == (body.ratings is None):
            raise ApiError(422, "give exactly one of users or ratings", "invalid")
        if body.ratings is not None:
            check_batch(len(body.ratings), "ratings")
            kwargs = dict(ratings=body.ratings, n=n, exclude_seen=body.exclude_seen, data_dir=registry.data_dir)
            try:
                recs = await call(len(body.ratings), queries.recommend, loaded.run, explain=body.explain, held=held,
                                  **kwargs)
            except RecsysError:
                if not body.explain:
                    raise
                # as for known users: a list whose explanation cannot be had comes with "reasons": null
                recs = await call(len(body.ratings), queries.recommend, loaded.run, held=held, **kwargs)
                recs.reasons = [None] * sum(1 for _ in recs.rows())
            return _json(recs.to_dict())
        check_batch(len(body.users), "users")
        if not body.users:
            raise ApiError(422, "users: give at least one user id", "invalid")
        return await call(len(body.users), recommend_users, loaded, body.users, n, body.exclude_seen,
                          wants_cache(request), body.explain, held=held)

    @app.get("/predict", tags=["predict"], responses=_example(
        {"user_id": 1, "item_id": 50, "prediction": 4.62, "fallback": None}), **openapi_params(*PREDICT_PARAMS))
    async def predict(request: Request):
        """Predicted rating for one pair, as `recsys predict RUN --user U --item I --format json` prints it
        (`time`: as `--time`)."""
        user, item, run, at = parse_query(request, PREDICT_PARAMS)
        loaded = use(request, run)
        result = queries.predict(loaded.run, [user], [item], timestamps=None if at is None else [at])
        return _noted(_json(result.to_dict()[0]), result)

    @app.post("/predict", tags=["predict"], **body_openapi(PredictBody))
    async def predict_batch(request: Request):
        """Predicted ratings for (user, item) pairs; a pair the model cannot score says which fallback it used."""
        return await read_body(request, PredictBody, lambda body, held: predict_body(request, body, held))

    async def predict_body(request: Request, body: PredictBody, held: bool):
        loaded = use(request, body.run)
        check_batch(len(body.pairs), "pairs")
        if not body.pairs:
            raise ApiError(422, "pairs: give at least one [user, item] pair", "invalid")
        users = [p[0] for p in body.pairs]
        items = [p[1] for p in body.pairs]
        if body.timestamps is not None and len(body.timestamps) != len(users):
            raise ApiError(422, f"timestamps: give one per pair ({len(users):,}), got {len(body.timestamps):,}",
                           "invalid")
        result = await call(len(users), queries.predict, loaded.run, users, items, timestamps=body.timestamps,
                            held=held)
        return _noted(_json(result.to_dict()), result)

    @app.get("/similar", tags=["items"], responses=_example(
        [{"item_id": 1, "rank": 1, "similar_item_id": 50, "title": "Star Wars", "similarity": 0.61}]),
             **openapi_params(*SIMILAR_PARAMS))
    async def similar(request: Request):
        """The n items most similar to `item` by the run's own similarity (404 for an item not in the catalogue)."""
        item, n, run = parse_query(request, SIMILAR_PARAMS)
        loaded = use(request, run)
        n = check_n(loaded, n)
        return _json(queries.similar(loaded.run, item, n=n).to_dict())

    @app.get("/items/{item}", tags=["items"], responses=_example(
        {"item_id": 1, "title": "Toy Story", "genres": ["Animation", "Children's", "Comedy"]}))
    async def item_info(request: Request, item: PathId, run: str | None = None):
        """An item of the run's catalogue: title, and genres when the run's dataset is on this machine."""
        loaded = use(request, run)
        if not -2**63 <= item < 2**63:  # as every other endpoint says of such an id (this one said 404)
            raise ApiError(422, f"item id {item} is out of range (ids are 64-bit integers)", "invalid")
        info = await run_in_threadpool(loaded.item_info, registry.data_dir)
        if item not in info:
            raise ApiError(404, f"item {item} is not in the catalogue of run {loaded.name!r}", "unknown_id")
        return _json(info[item])

    # ----- operations ------------------------------------------------------------------------------
    @app.get("/metrics", tags=["server"])
    async def prometheus():
        """Prometheus text: requests and latency per endpoint and run, cache hits/misses, model load times."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/admin/reload", tags=["server"], responses=_example(
        {"reloaded": ["svd-ml-100k-random"], "unchanged": [], "failed": {}, "ok": True}))
    async def reload(force: bool = Query(False, description="Reload every run, changed or not.")):
        """Reload runs whose folder changed (e.g. after `recsys train --force`): each new model is loaded beside
        the old one and swapped in at once; a run that fails to load keeps serving the old one (see `failed`).
        Under `--workers N` the reply is the answering worker's, and every other worker then reloads its
        changed runs too."""
        report = await run_in_threadpool(registry.reload, force=force)
        if supervisor_pid and os.getppid() == supervisor_pid:  # (never a stranger that took a dead pid)
            import signal

            try:
                os.kill(supervisor_pid, signal.SIGHUP)  # the supervisor passes it to every worker
            except OSError:
                pass
        return _json(report)

    from recsys_cli.serve.dashboard import add_dashboard

    add_dashboard(app, registry, json_response=_json, use=use, ui=ui)

    return ServeMiddleware(app, api_key=api_key, metrics=metrics, max_body=max_body, max_url=max_url, log=log)


def serve_app(runs: list[str], *, default: str | None = None, artifacts_dir=None, data_dir=None,
              cache_size: int = 10_000, api_key: str | None = None, max_batch: int = MAX_BATCH,
              handle_sighup: bool = False, mmap: bool = True, single_thread_blas: bool = False, ui: bool = False,
              log=None, server_process: bool = False, supervisor_pid: int | None = None):
    """Load `runs` and build the app (an ASGI callable). Raises the first load error, naming the run.

    single_thread_blas: cap BLAS at one thread for the whole process (what `recsys serve` does). A
    one-user product is too small to split, and BLAS threads spinning beside concurrent requests cost
    up to 5x (1 x 64 by 64 x 59k: 2.4 ms on one thread, 11.6 ms on two, on a busy 2-core machine).
    Large batches still use every core: the model splits them over its own threads.

    server_process: the app is its process's only work (`recsys serve`, not a test): glibc returns
    blocks of 1 MiB or more to the system when freed (see `return_large_frees`), and once the runs are
    loaded every object made so far moves to the collector's permanent generation (gc.freeze), so
    full collections walk only what requests make, not the libraries and runs.

    supervisor_pid: this is one of `recsys serve --workers N`'s workers; /admin/reload then also sends
    SIGHUP to that supervisor, which passes it to every worker, so all of them reload (see `supervise`).
    """
    if server_process:
        return_large_frees()
    if single_thread_blas:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    metrics = ServerMetrics()
    registry = RunRegistry(runs, default=default, artifacts_dir=artifacts_dir, data_dir=data_dir,
                           cache_size=cache_size, on_load=metrics.on_load, mmap=mmap)
    registry.load_all()
    if single_thread_blas:  # again: loading the runs may have loaded another BLAS (SciPy's own OpenBLAS)
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    app = create_app(registry, api_key=api_key, metrics=metrics, max_batch=max_batch, handle_sighup=handle_sighup,
                     ui=ui, log=log, supervisor_pid=supervisor_pid)
    app.registry = registry  # for tests and the CLI
    if server_process:  # what start-up made lives as long as the process
        import gc

        gc.collect()
        gc.freeze()  # ... so collections no longer walk the libraries', the app's and the runs' objects
    return app


_TRIM: dict[str, Any] = {}  # "malloc_trim": glibc's, once return_large_frees has run (the server process)


def _then_trim(fn, *args, **kwargs):
    """fn(...), then (in a server process) the free pages of the allocator's heaps go back to the system: a
    1,000-user batch leaves ~5 MB of freed small blocks scattered among live ones (cache entries); ~0.7 ms."""
    try:
        return fn(*args, **kwargs)
    finally:
        trim = _TRIM.get("malloc_trim")
        if trim is not None:
            trim(0)


def return_large_frees(threshold: int = 1 << 20) -> bool:
    """glibc only (elsewhere a no-op, False): serve allocations of `threshold` bytes or more from their own
    mappings, always, keep one heap for all threads, and return the free pages of the heap after each large
    request (`_then_trim`). By
    default glibc raises that threshold to the largest block freed so far, so after the first batch its score
    matrices (MBs) come from the thread's heap and stay resident once freed."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return False
    m_mmap_threshold, m_arena_max = -3, -8
    if not mallopt(m_mmap_threshold, threshold):
        return False
    # One heap for every thread: the server's threads (event loop, one compute thread per core) allocate under
    # the GIL anyway, and each extra heap kept ~1 MB of freed blocks resident (measured on ml-100k: the peak
    # under 64 clients' batches fell 1.5 MB).
    mallopt(m_arena_max, 1)
    _TRIM["malloc_trim"] = malloc_trim
    return True


CONFIG_ENV = "RECSYS_SERVE_CONFIG"


def app_from_env():
    """uvicorn factory for --workers N: each worker process loads the runs itself from the JSON config."""
    config = json.loads(os.environ[CONFIG_ENV])
    if config.get("supervisor_pid"):
        exit_with_parent(config["supervisor_pid"])
    return serve_app(**config, handle_sighup=True, single_thread_blas=True, server_process=True)


def exit_with_parent(parent: int) -> None:
    """Linux: have the kernel send this worker SIGTERM when its supervisor dies (even by SIGKILL), so no
    orphaned worker goes on holding the port and answering from runs nobody reloads. Elsewhere a no-op."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took hold
        os.kill(os.getpid(), signal.SIGTERM)
