"""`recsys serve` as a real process: start on a free loopback port, wait for /ready, query it over HTTP, swap a
run (`train --force` + reload, and again with SIGHUP) while requests keep coming, then SIGTERM -> exit 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_helpers import recsys, wait_for

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RUN = "svd-synth-random"




def train(env, seed: int, factors: int):
    recsys("train", "svd", "--dataset", "synth", "--split", "random", "-p", f"factors={factors}", "-p", "epochs=5",
           "--seed", seed, "--force", "--format", "json", env=env)


def synth_env(tmp_path) -> dict:
    """The environment of a server test: its own data and artifacts folders, synth data, RUN trained (seed 1)."""
    env = {**os.environ, "RECSYS_DATA_DIR": str(tmp_path / "data"), "RECSYS_ARTIFACTS_DIR": str(tmp_path / "arts"),
           "RECSYS_NO_PROGRESS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RECSYS_API_KEY", None)
    recsys("generate", "synth", "--users", "150", "--items", "90", "--ratings", "5000", env=env)
    recsys("preprocess", "synth", "--format", "json", env=env)
    train(env, seed=1, factors=8)
    return env


@contextmanager
def serving(env, log: Path, *options: str):
    """`recsys serve RUN --port 0 OPTIONS` as a process, its stderr into `log`: (process, base URL) once it listens;
    killed on the way out unless the test stopped it."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "recsys_cli", "serve", RUN, "--port", "0", *options],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        match = wait_for(lambda: re.search(r"on http://127\.0\.0\.1:(\d+)", log.read_text()), 120, "the server")
        yield proc, f"http://127.0.0.1:{match.group(1)}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_real_server_reload_under_load_and_sigterm(tmp_path):
    env = synth_env(tmp_path)  # synth data and RUN trained on it (seed 1, 8 factors)

    log = tmp_path / "serve.log"
    with serving(env, log, "--cache-size", "50") as (proc, base):
        client = httpx.Client(base_url=base, timeout=30)
        wait_for(lambda: client.get("/ready").status_code == 200, 60, "/ready")

        def cli_recs():
            out = recsys("recommend", RUN, "--user", 1, "-n", 5, "--format", "json", env=env).stdout
            return json.loads(out)

        first = client.get("/recommend", params={"user": 1, "n": 5}).json()
        assert first == cli_recs()
        assert client.get("/health").json()["runs"] == [RUN]

        failures: list[str] = []
        answers = {"count": 0}
        stop = threading.Event()

        def hammer():  # requests in flight during the swaps: none may fail
            with httpx.Client(base_url=base, timeout=30) as c:
                while not stop.is_set():
                    r = c.get("/recommend", params={"user": 1 + answers["count"] % 40, "n": 5})
                    b = c.post("/recommend", json={"users": [1, 2, 3, 99999], "n": 3})
                    for res in (r, b):
                        if res.status_code != 200 or not res.json():
                            failures.append(f"{res.status_code} {res.text[:200]}")
                    answers["count"] += 1

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            train(env, seed=2, factors=4)
            report = client.post("/admin/reload").json()
            assert report == {"reloaded": [RUN], "unchanged": [], "failed": {}, "ok": True}
            second = client.get("/recommend", params={"user": 1, "n": 5}).json()
            assert second != first and second == cli_recs()

            train(env, seed=3, factors=6)
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: client.get(f"/runs/{RUN}").json()["config"]["factors"] == 6, 60, "the SIGHUP reload")
            third = client.get("/recommend", params={"user": 1, "n": 5}).json()
            assert third != second and third == cli_recs()
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert failures == [] and answers["count"] > 0

        metrics = client.get("/metrics").text
        assert re.search(rf'recsys_model_loads_total{{result="ok",run="{RUN}"}} 3\.0', metrics)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    lines = log.read_text().splitlines()
    requests = [json.loads(x) for x in lines if x.startswith("{")]
    assert len(requests) >= 2 * answers["count"] and all({"method", "path", "status", "ms"} <= set(r) for r in requests)
    assert lines[-1] == "server stopped"


def test_workers_sighup_and_admin_reload_reach_every_worker(tmp_path):
    """--workers 2: SIGHUP to the supervisor reaches both workers, each reloads in place; a damaged run keeps
    serving the old model in both and both say why (uvicorn alone would try to replace the workers, print the
    failed worker's traceback and keep the old ones unaware); /admin/reload reaches the other worker too."""
    env = synth_env(tmp_path)  # synth data and RUN trained on it (seed 1, 8 factors)
    manifest = tmp_path / "arts" / RUN / "manifest.json"

    log = tmp_path / "serve.log"
    with serving(env, log, "--workers", "2") as (proc, base):

        def details():  # one new connection per request, so the kernel hands them to either worker
            seen = {}
            for _ in range(60):
                try:
                    r = httpx.get(f"{base}/runs/{RUN}", timeout=30)
                except httpx.TransportError:  # the workers are still starting
                    return seen
                if r.status_code == 200:
                    seen[r.json()["worker_pid"]] = r.json()
                if len(seen) == 2:
                    break
            return seen

        def both(check):
            seen = details()
            return len(seen) == 2 and all(check(d) for d in seen.values())

        wait_for(lambda: both(lambda d: d["last_reload_error"] is None), 120, "both workers")
        good = manifest.read_text()
        manifest.write_text("garbage")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: both(lambda d: "unreadable manifest" in (d["last_reload_error"] or "")), 60,
                 "both workers to report the failed reload")
        assert both(lambda d: d["config"]["factors"] == 8 and d["generation"] == 1)
        assert httpx.get(f"{base}/recommend", params={"user": 1, "n": 5}, timeout=30).status_code == 200

        manifest.write_text(good)
        train(env, seed=2, factors=4)
        report = httpx.post(f"{base}/admin/reload", timeout=30).json()
        assert report == {"reloaded": [RUN], "unchanged": [], "failed": {}, "ok": True}
        wait_for(lambda: both(lambda d: d["config"]["factors"] == 4 and d["last_reload_error"] is None), 60,
                 "both workers to reload")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    text = log.read_text()
    assert "Traceback" not in text and "aborting the restart" not in text
    assert text.splitlines()[-1] == "server stopped"


def test_workers_exit_when_the_supervisor_is_killed(tmp_path):
    """SIGKILL to `recsys serve --workers 2` (no chance to stop its workers): the workers go too (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the kernel's parent-death signal is Linux-only")
    env = synth_env(tmp_path)  # synth data and RUN trained on it (seed 1, 8 factors)
    log = tmp_path / "serve.log"
    pids: set[int] = set()
    try:
        with serving(env, log, "--workers", "2") as (proc, base):

            def both_answer():
                try:
                    pids.add(httpx.get(f"{base}/runs/{RUN}", timeout=30).json()["worker_pid"])
                except httpx.TransportError:
                    pass
                return len(pids) == 2

            wait_for(both_answer, 120, "both workers")
            proc.kill()
            proc.wait()

            def gone(pid: int) -> bool:
                try:
                    state = Path(f"/proc/{pid}/status").read_text()
                except FileNotFoundError:
                    return True
                return "\nState:\tZ" in state  # exited, not yet reaped

            wait_for(lambda: all(gone(p) for p in pids), 60, "the orphaned workers to exit")
    finally:
        for pid in pids:  # (only when the test failed)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_requests_uvicorn_refuses_and_slow_clients_leave_only_json_lines(tmp_path):
    """Raw HTTP against the real process: a request line uvicorn cannot parse was logged as a plain
    `WARNING:  Invalid HTTP request received.` among the JSON lines; a client that hung up mid-body as a 500
    with an error line. Now every line between the banner and `server stopped` is JSON, and a client that sends
    half a body and waits blocks nobody."""
    import socket

    env = synth_env(tmp_path)  # synth data and RUN trained on it (seed 1, 8 factors)
    log = tmp_path / "serve.log"
    with serving(env, log) as (proc, base):
        port = int(base.rsplit(":", 1)[1])
        client = httpx.Client(base_url=base, timeout=30)
        wait_for(lambda: client.get("/ready").status_code == 200, 60, "/ready")

        def exchange(data: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(data)
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
                return out

        assert exchange(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)  # half a body, then nothing
        slow.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"users\": [1,")
        got = client.get("/recommend", params={"user": 1, "n": 2})
        assert got.status_code == 200 and len(got.json()) == 2
        slow.close()  # ... and hangs up
        wait_for(lambda: '"status": 499' in log.read_text(), 30, "the 499 line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    lines = log.read_text().splitlines()
    assert lines[0].startswith("serving ") and lines[-1] == "server stopped"
    records = [json.loads(line) for line in lines[1:-1]]  # every one JSON
    assert [(r["level"], r["message"]) for r in records if "level" in r] == [("warning", "Invalid HTTP request received.")]
    assert [(r["method"], r["path"], r["status"]) for r in records if "method" in r][-2:] == [
        ("GET", "/recommend", 200), ("POST", "/recommend", 499)]
    assert not [r for r in records if r.get("level") == "error"] and "Traceback" not in log.read_text()
