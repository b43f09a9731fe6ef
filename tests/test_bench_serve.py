"""The serve suite's pieces: the bounded load generator (against a tiny asyncio HTTP server that counts what it
gets) and the shape-only ials run (loadable, the release's shape, answers like any run)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from recsys_cli.bench import serve as bench


class CountingServer:
    """HTTP/1.1 keep-alive server on a free port: 200 for /ok, 500 for /fail; counts requests and connections."""

    def __init__(self) -> None:
        self.requests = 0
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    async def _handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                length = 0
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h[15:])
                await reader.readexactly(length)
                self.requests += 1
                status = b"200 OK" if line.split()[1] == b"/ok" else b"500 Internal Server Error"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        finally:
            writer.close()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def server():
    s = CountingServer()
    yield s
    s.close()


def test_load_generator_sends_exactly_the_bounded_count_over_keep_alive(server):
    result = bench.drive("127.0.0.1", server.port, [bench.get("/ok"), bench.post("/ok", b'{"users": [1]}')],
                         concurrency=8, total=400, seconds=60)
    assert result["requests"] == server.requests == 400 and result["errors"] == 0
    assert server.connections == 8  # one keep-alive connection per client
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    # seconds is rounded to the millisecond and rps to 0.1: the elapsed time rps was computed from lies within
    # half a millisecond of seconds (on a 25 ms run that alone moves 400 / seconds by 2 %)
    low, high = result["seconds"] - 0.0005, result["seconds"] + 0.0005
    assert low > 0 and 400 / high - 0.05 <= result["rps"] <= 400 / low + 0.05


def test_load_generator_counts_error_statuses_and_stops_at_the_time_limit(server):
    result = bench.drive("127.0.0.1", server.port, [bench.get("/ok"), bench.get("/fail")], concurrency=2, total=100,
                         seconds=60)
    assert result["requests"] == 100 and result["errors"] == 50
    before = server.requests
    result = bench.drive("127.0.0.1", server.port, [bench.get("/ok")], concurrency=4, total=10**9, seconds=0.3)
    assert 0 < result["requests"] == server.requests - before < 10**9  # stopped by the time limit, not the count


def test_shape_run_has_the_scale_shape_and_serves(tmp_path):
    from recsys_cli.api import load_run
    from recsys_cli.bench.datasets import parse_scale

    name, described = bench._shape_run(parse_scale("20000"), tmp_path, seed=3, factors=16)
    model = load_run(name, artifacts_dir=tmp_path).model
    assert (described["users"], described["items"]) == (model.user_ids.size, model.item_ids.size) == (166, 848)
    assert model.params["factors"] == 16 and model.estimator.X.shape == (described["users"], 16)
    est = model.estimator
    assert est.seen_indptr[-1] == described["ratings"] == est.user_counts.sum()
    recs = model.top_n([1, 2], 5)
    seen = set(est.seen_indices[est.seen_indptr[0]:est.seen_indptr[1]].tolist())
    assert recs.items.shape == (2, 5) and not seen & set((recs.items[0] - 1).tolist())
    # the scores are the factor products, ranked
    scores = est.X[0] @ est.Y.T
    scores[list(seen)] = -np.inf
    assert recs.items[0].tolist() == (np.argsort(-scores, kind="stable")[:5] + 1).tolist()


def test_memory_target_is_judged_against_the_servers_own_ready_rss():
    rows = [{"task": "GET /health", "concurrency": 8, "rps": 100.0, "p99_ms": 1.0, "errors": 0, "peak_rss_mb": 201.0},
            {"task": "POST /recommend (1,000 users, uncached)", "concurrency": 8, "rps": 10.0, "p99_ms": 9.0,
             "errors": 0, "peak_rss_mb": 230.0}]
    args = dict(scale="1m", described={}, model="svd", params={}, arrays=2.0, baseline=250.0, seed=1, threads=None)

    def memory_note(peak):
        report = bench._report(rows, overall_peak=peak, ready=200.0, **args)
        assert report["memory"]["server_ready_mb"] == 200.0
        return next(n for n in report["notes"] if n.startswith("memory: "))

    assert memory_note(230.0).endswith("target peak <= interpreter + 2x arrays = ready + arrays = 202.0 MB: missed")
    assert "peak 201.0 MB in the single-user phases, 230.0 MB overall" in memory_note(230.0)
    assert memory_note(202.0).endswith("= 202.0 MB: met")
