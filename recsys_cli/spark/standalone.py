"""A Spark standalone cluster on this machine (a master and one worker on 127.0.0.1), for trials.

`local_cluster()` starts both with the `spark-class` script shipped with pyspark, waits (bounded)
until the worker has registered, yields the master URL and always stops both. It is how the
tests and the benchmark check `--spark-master spark://...` without a real cluster; on a real
one, point --spark-master (or $RECSYS_SPARK_MASTER) at its master instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from recsys_cli.errors import EngineError

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    fh = open(log, "wb")
    try:
        return subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], stdout=fh,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        fh.close()


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@contextlib.contextmanager
def local_cluster(cores: int = 2, memory: str = "2g", wait: float = 90.0):
    """Yield `spark://127.0.0.1:PORT` of a master with one worker; both are stopped on exit."""
    from recsys_cli.spark.session import check_prerequisites

    check_prerequisites()
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_NO_DAEMONIZE": "1"}
    logs = Path(tempfile.mkdtemp(prefix="recsys-spark-cluster-"))
    env["SPARK_WORKER_DIR"] = str(logs / "work")
    port = _free_port()
    url = f"spark://{HOST}:{port}"
    master = worker = None
    keep_logs = True
    try:
        master = _start(["org.apache.spark.deploy.master.Master", "--host", HOST, "--port", str(port),
                         "--webui-port", str(_free_port())], logs / "master.log", env)
        worker = _start(["org.apache.spark.deploy.worker.Worker", url, "--host", HOST, "--cores", str(cores),
                         "--memory", memory, "--webui-port", str(_free_port())], logs / "worker.log", env)
        deadline = time.monotonic() + wait
        while "Registering worker" not in (logs / "master.log").read_text(errors="replace"):
            if time.monotonic() > deadline or master.poll() is not None or worker.poll() is not None:
                raise EngineError(f"the local Spark cluster did not come up within {wait:g} s (logs in {logs})")
            time.sleep(0.5)
        yield url
        keep_logs = False  # after a failure the logs stay (the error names their folder)
    finally:
        _stop(worker)
        _stop(master)
        if not keep_logs:
            import shutil

            shutil.rmtree(logs, ignore_errors=True)
