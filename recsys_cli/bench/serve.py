"""`recsys benchmark --suite serve`: start `recsys serve` on 127.0.0.1 in its own process and load it.

The load generator is a small asyncio HTTP/1.1 client (keep-alive connections, one per simulated
client): it needs a fraction of httpx's CPU per request, which matters when generator and server
share two cores. Every phase is bounded by a request count and a time limit. Reported per endpoint
and concurrency (1, 8, 64): requests/s, p50/p95/p99 latency, errors, the server's peak RSS.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CONCURRENCY = (1, 8, 64)
PHASE_SECONDS = 8.0  # time limit of one phase
LIGHT_REQUESTS = 3000  # request count of a phase of single-user / health / predict requests
BATCH_REQUESTS = 150  # ... of 1,000-user batches
BATCH_USERS = 1000
WARMUP_REQUESTS = 30
TARGETS = {  # the targets on a 2-core machine, judged at concurrency 8 on an ml-100k svd run
    "uncached_ratio": 0.5, "cached_ratio": 0.8, "uncached_p99_ms": 25.0, "batch_p50_ms": 50.0,
    "shape25m_p99_ms": 50.0,  # single-user recommend on an ials 64-factor run of ml-25m shape
}


# ----- the load generator ----------------------------------------------------------------------------
class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def request(self, raw: bytes) -> int:
        """Send one prepared request, read the whole response; returns the status code."""
        if self.writer is None:
            await self.open()
        self.writer.write(raw)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


def get(path: str, *, no_cache: bool = False) -> bytes:
    extra = "Cache-Control: no-cache\r\n" if no_cache else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, *, no_cache: bool = False) -> bytes:
    extra = "Cache-Control: no-cache\r\n" if no_cache else ""
    head = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _drive(host: str, port: int, requests: list[bytes], concurrency: int, total: int,
                 seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    state = {"next": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        conn = _Connection(host, port)
        try:
            while state["next"] < total and time.perf_counter() < deadline:
                raw = requests[state["next"] % len(requests)]
                state["next"] += 1
                t0 = time.perf_counter()
                try:
                    status = await conn.request(raw)
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                    state["errors"] += 1
                    conn.close()
                    continue
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    state["errors"] += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    pct = np.percentile(lat, [50, 95, 99]) if lat.size else [float("nan")] * 3
    return {"requests": len(latencies), "errors": state["errors"], "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else None,
            "p50_ms": round(float(pct[0]), 3), "p95_ms": round(float(pct[1]), 3), "p99_ms": round(float(pct[2]), 3)}


def drive(host: str, port: int, requests: list[bytes], *, concurrency: int, total: int,
          seconds: float = PHASE_SECONDS) -> dict[str, Any]:
    """Send `total` requests (cycling through `requests`) from `concurrency` clients, stopping at `seconds`."""
    return asyncio.run(_drive(host, port, requests, concurrency, total, seconds))


# ----- the server process --------------------------------------------------------------------------
def _hwm_mb(pid: int) -> float | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def _rss_mb(pid: int) -> float | None:
    try:
        match = re.search(r"VmRSS:\s+(\d+)\s+kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def _reset_hwm(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _start_server(run: str, env: dict[str, str], log_path: Path, cache_size: int,
                  threads: int | None = None) -> tuple[subprocess.Popen, int]:
    extra = ["--threads", str(threads)] if threads else []
    with open(log_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "recsys_cli", "serve", run, "--port", "0",
                                 "--cache-size", str(cache_size), *extra], env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
    end = time.monotonic() + 300
    while time.monotonic() < end:
        match = re.search(r"on http://127\.0\.0\.1:(\d+)", log_path.read_text())
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    from recsys_cli.errors import RecsysError

    raise RecsysError(f"the server did not start: {log_path.read_text()[-2000:]}")


def _baseline_mb(run: str, env: dict[str, str]) -> float | None:
    """Peak RSS of a plain process with the server's libraries that loads the run and answers one recommend and
    one predict in process (interpreter, libraries, JIT kernels, arrays): what serving adds is the rest."""
    code = ("import re, polars, uvicorn, recsys_cli.serve.app; from recsys_cli.api import load_run; "
            f"m = load_run({run!r}).model; m.top_n(m.user_ids[:64], 10); m.predict(m.user_ids[:2], m.item_ids[:2]); "
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    try:
        return int(res.stdout.strip()) / 1024
    except ValueError:
        return None


def _arrays_mb(path: Path) -> float:
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        return sum(npz[k].nbytes for k in npz.files) / 2**20


def _shape_run(scale, root: Path, seed: int, factors: int = 64) -> tuple[str, dict[str, Any]]:
    """An ials run with random factors and seen lists of the scale's shape (no training: serving cost depends on
    the shapes, not the values). Seen lists follow a skewed item popularity, like a MovieLens release."""
    from recsys_cli.artifacts import ArtifactStore
    from recsys_cli.bench.datasets import synthetic_sizes
    from recsys_cli.data.synthetic import PRESETS
    from recsys_cli.models.registry import get_model_class

    if scale.release is not None:
        spec = PRESETS[scale.release]
        n_users, n_items, n_ratings = spec.n_users, spec.n_items, spec.n_ratings
    else:
        sizes = synthetic_sizes(int(scale.n_ratings))
        n_users, n_items, n_ratings = sizes["n_users"], sizes["n_items"], sizes["n_ratings"]
    rng = np.random.default_rng(seed)
    counts = np.maximum(20, rng.lognormal(np.log(n_ratings / n_users) - 0.5, 1.0, n_users)).astype(np.int64)
    counts = np.minimum(counts, n_items // 2)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    seen = rng.choice(n_items, int(counts.sum()), p=popularity / popularity.sum()).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    item_counts = np.bincount(seen, minlength=n_items).astype(np.int32)
    cls = get_model_class("ials")
    X = (rng.standard_normal((n_users, factors)) * 0.1).astype(np.float32)
    Y = (rng.standard_normal((n_items, factors)) * 0.1).astype(np.float32)
    state = {
        "core.user_ids": np.arange(1, n_users + 1, dtype=np.int64),
        "core.item_ids": np.arange(1, n_items + 1, dtype=np.int64), "core.seen_indptr": indptr,
        "core.seen_indices": seen, "core.user_counts": counts.astype(np.int32), "core.item_counts": item_counts,
        "core.fb_user_bias": np.zeros(n_users, np.float32), "core.fb_item_bias": np.zeros(n_items, np.float32),
        "core.fb_rank": np.lexsort((np.arange(n_items), -item_counts)).astype(np.int32),
        "core.global_mean": np.float32(3.5), "core.rating_scale": np.asarray([0.5, 5.0]),
        "model.X": X, "model.Y": Y, "model.YtY": (Y.T @ Y).astype(np.float32),
    }
    model = cls.from_state(cls.Config.from_dict({"factors": factors}), state)
    name = f"ials-{scale.label}-shape"
    ArtifactStore(root).save(name, model, dataset=f"{scale.label}-shape", fingerprint="", split=None, seed=seed,
                             train_seconds=0.0, titles={})
    described = {"name": f"{scale.label} shape", "source": f"random ials factors ({factors}) and seen lists",
                 "ratings": int(counts.sum()), "users": n_users, "items": n_items}
    return name, described


def run_serve_suite(scale_text: str = "ml-100k", *, seed: int = 42, data_dir=None, threads: int | None = None,
                    log=None) -> dict[str, Any]:
    """Train a run on the scale's data into a scratch folder, serve it, load it; the report of the table."""
    from recsys_cli import settings
    from recsys_cli.api.runs import train_run
    from recsys_cli.bench.datasets import parse_scale, prepare

    log = log or (lambda msg: None)
    load_before = os.getloadavg()
    scale = parse_scale(scale_text)
    data = prepare(scale, data_dir=data_dir, seed=seed) if scale.release == "ml-100k" else None
    model, params = ("svd", {}) if data is not None else ("ials", {"factors": 64})
    root = settings.data_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".bench-serve-", dir=root))
    env = {**os.environ, "RECSYS_ARTIFACTS_DIR": str(scratch), "RECSYS_NO_PROGRESS": "1",
           "RECSYS_DATA_DIR": str(data.data_dir if data is not None else root)}
    env.pop("RECSYS_API_KEY", None)
    # the server's compute threads (serve --threads, default 1), also for the in-process memory baseline
    env["RECSYS_THREADS"] = env["NUMBA_NUM_THREADS"] = str(threads or 1)
    rows: list[dict[str, Any]] = []
    proc = None
    try:
        if data is not None:
            log(f"serve suite: training {model} on {data.name}")
            run = train_run(model, data.name, params=params, seed=seed, name=f"{model}-bench",
                            data_dir=data.data_dir, artifacts_dir=scratch)["run"]
            described = data.describe()
        else:
            log(f"serve suite: writing an ials run of {scale.label} shape")
            run, described = _shape_run(scale, scratch, seed)
        log("serve suite: starting recsys serve")
        proc, port = _start_server(run, env, scratch / "serve.log", cache_size=1_000_000, threads=threads)
        # ready: the run loaded, its kernels warmed, uvicorn started (it has answered one /health); no other request
        drive("127.0.0.1", port, [get("/health")], concurrency=1, total=1, seconds=30)
        ready = _rss_mb(proc.pid)
        from recsys_cli.api import load_run

        rec = load_run(run, artifacts_dir=scratch).model
        users, items = rec.user_ids, rec.item_ids
        rng = np.random.default_rng(seed)
        pick_u = rng.choice(users, 4096)
        pick_i = rng.choice(items, 4096)
        phases = [
            ("GET /health", [get("/health")], LIGHT_REQUESTS),
            ("GET /recommend (uncached)", [get(f"/recommend?user={u}&n=10", no_cache=True) for u in pick_u],
             LIGHT_REQUESTS),
            ("GET /recommend (cached)", [get(f"/recommend?user={u}&n=10") for u in pick_u], LIGHT_REQUESTS),
            ("GET /predict", [get(f"/predict?user={u}&item={i}") for u, i in zip(pick_u, pick_i, strict=True)],
             LIGHT_REQUESTS),
            (f"POST /recommend ({BATCH_USERS:,} users, uncached)",
             [post("/recommend", ('{"n": 10, "users": [' + ",".join(map(str, rng.choice(users, BATCH_USERS)))
                                  + "]}").encode(), no_cache=True) for _ in range(8)], BATCH_REQUESTS),
        ]
        # fill the cache with every sampled user once (cached phase then measures hits only)
        drive("127.0.0.1", port, [get(f"/recommend?user={u}&n=10") for u in np.unique(pick_u)], concurrency=8,
              total=len(np.unique(pick_u)), seconds=120)
        for _, requests, _ in phases:
            drive("127.0.0.1", port, requests, concurrency=4, total=WARMUP_REQUESTS, seconds=30)
        # Endpoints interleaved per concurrency level: /health is measured seconds before the endpoints it is the
        # ceiling of, so a change in the machine's load between phases skews the ratios less.
        for c in CONCURRENCY:
            for task, requests, total in phases:
                log(f"serve suite: {task} at concurrency {c}")
                reset = _reset_hwm(proc.pid)
                result = drive("127.0.0.1", port, requests, concurrency=c, total=total)
                rows.append({"task": task, "concurrency": c, **result,
                             "peak_rss_mb": round(_hwm_mb(proc.pid) or 0, 1) if reset else None})
        rows.sort(key=lambda r: [p[0] for p in phases].index(r["task"]))  # the table: by endpoint, then clients
        # each phase reset the high-water mark: the overall peak is the largest of the phases' peaks
        overall_peak = max([r["peak_rss_mb"] for r in rows if r["peak_rss_mb"]] + [_hwm_mb(proc.pid) or 0]) or None
        arrays = _arrays_mb(scratch / run)
        baseline = _baseline_mb(run, env)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    report = _report(rows, scale.label, described, model, params, arrays, baseline, overall_peak, seed, threads,
                     ready)
    load_after = os.getloadavg()
    report["notes"].append(f"machine load average (1 min) at start / end: {load_before[0]:.1f} / {load_after[0]:.1f} "
                           "(other jobs share the cores when it is above ~1)")
    return report


def _report(rows, scale, described, model, params, arrays, baseline, overall_peak, seed, threads,
            ready=None) -> dict[str, Any]:
    from recsys_cli.bench.machine import machine_info

    def at(task_prefix: str, c: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["task"].startswith(task_prefix) and r["concurrency"] == c), None)

    ratios = []
    for c in CONCURRENCY:
        health = at("GET /health", c)
        for name, prefix in (("uncached", "GET /recommend (uncached)"), ("cached", "GET /recommend (cached)")):
            r = at(prefix, c)
            if health and r and health["rps"]:
                ratios.append({"concurrency": c, "what": f"recommend ({name}) / health", "ratio": round(r["rps"] / health["rps"], 3)})
    notes = [
        "the load generator (asyncio, keep-alive, one connection per client) runs on the same machine as the "
        "server: both share its cores; every phase is bounded by its request count and " f"{PHASE_SECONDS:.0f} s",
        "peak MB: the server process's peak RSS during the phase (VmHWM reset before it)",
    ]
    if ready is not None:
        # "the interpreter": what the server process itself holds before its first request (Python, the
        # libraries, the JIT kernels; the run's arrays taken out), measured in that process
        interpreter = ready - arrays
        single = [r["peak_rss_mb"] for r in rows if r["peak_rss_mb"] and not r["task"].startswith("POST")]
        verdict = "met" if overall_peak is not None and overall_peak <= interpreter + 2 * arrays else "missed"
        notes.append(f"memory: model arrays {arrays:.1f} MB; server when ready (interpreter, libraries, JIT kernels, "
                     f"arrays; after one /health, before any other request) {ready:.1f} MB; peak {max(single):.1f} MB in the single-user "
                     f"phases, {overall_peak or 0:.1f} MB overall (1,000-user batches side by side); target peak <= "
                     f"interpreter + 2x arrays = ready + arrays = {interpreter + 2 * arrays:.1f} MB: {verdict}"
                     if single else f"memory: server when ready {ready:.1f} MB")
    if baseline is not None:
        notes.append(f"memory, for comparison with earlier runs: a separate plain process with the same libraries "
                     f"answering one 64-user recommend and one predict in process {baseline:.1f} MB (peak)")
    if scale == "ml-100k":
        u, c, b, h = at("GET /recommend (uncached)", 8), at("GET /recommend (cached)", 8), at("POST /recommend", 1), \
            at("GET /health", 8)
        if u and c and b and h and h["rps"]:
            checks = [
                ("uncached >= 0.5x health", u["rps"] / h["rps"] >= TARGETS["uncached_ratio"]),
                ("uncached p99 <= 25 ms", u["p99_ms"] <= TARGETS["uncached_p99_ms"]),
                ("cached >= 0.8x health", c["rps"] / h["rps"] >= TARGETS["cached_ratio"]),
                ("batch of 1,000 p50 <= 50 ms (1 client: latency of one batch)", b["p50_ms"] <= TARGETS["batch_p50_ms"]),
                ("zero errors", all(r["errors"] == 0 for r in rows)),
            ]
            notes.append("targets (ratios and single-user p99 at 8 clients): " + "; ".join(f"{k}: {'met' if ok else 'missed'}" for k, ok in checks))
    if scale == "ml-25m":
        u = at("GET /recommend (uncached)", 8)
        if u:
            notes.append(f"target at ml-25m shape: single-user p99 <= {TARGETS['shape25m_p99_ms']:.0f} ms at 8 clients: "
                         + ("met" if u["p99_ms"] <= TARGETS["shape25m_p99_ms"] else "missed"))
    return {
        "machine": machine_info(), "suite": "serve", "scale": scale, "dataset": described,
        "settings": {"threads": threads or 1, "seed": seed, "model": model, "params": params,
                     "phase_seconds": PHASE_SECONDS, "memory": "server VmHWM"},
        "rows": rows, "ratios": ratios, "memory": {"arrays_mb": round(arrays, 2), "baseline_mb": baseline,
                                                   "server_ready_mb": ready, "server_peak_mb": overall_peak},
        "notes": notes,
    }
