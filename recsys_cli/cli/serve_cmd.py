"""serve: answer recommend/predict/similar over HTTP (FastAPI + uvicorn; the optional `serve` extra)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from recsys_cli.cli.common import ArtifactsDirOpt, DataDirOpt

HELP = """Serve trained runs over HTTP: the JSON rows of recommend, predict and similar, raw MovieLens ids.

Runs are loaded once at start-up. POST /admin/reload or `kill -HUP PID` reloads runs whose folders
changed (e.g. after `recsys train --force`), swapping each in atomically. Binds to 127.0.0.1 by
default; any other address needs an API key (--api-key or $RECSYS_API_KEY, sent as X-API-Key,
Authorization: Bearer, or the password of HTTP Basic auth: a browser opening /docs prompts for it)
unless --insecure. SIGTERM or Ctrl-C finishes the requests in flight and exits 0.
Endpoints and examples: http://HOST:PORT/docs. Needs `pip install 'recsys-cli[serve]'`.

Examples:

\b
  recsys serve svd-ml-100k-random
  recsys serve svd-ml-100k-random ials-ml-100k-user --default svd-ml-100k-random --port 8080
  RECSYS_API_KEY=secret recsys serve svd-ml-100k-random --host 0.0.0.0 --workers 2
  recsys serve svd-ml-100k-random ials-ml-100k-user --ui     # then open http://127.0.0.1:8000/
  curl 'http://127.0.0.1:8000/recommend?user=1&n=5'
"""


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int):
    """A bound socket for uvicorn; UsageError naming the address when it is taken or not ours."""
    import socket

    from recsys_cli.errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets (else 40 ms Nagle/delayed-ACK stalls)
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def supervise(config, sock) -> None:
    """Run uvicorn's worker supervisor over `sock`, except that SIGHUP reaches every worker.

    uvicorn's own answer to SIGHUP is to replace the workers one by one, and when a replacement cannot
    start (a run damaged mid-retrain) it prints the worker's traceback and keeps the old one, which then
    knows nothing of the failure. Passed on instead, SIGHUP makes each worker reload its changed runs in
    place, as one process does: a run that fails to load keeps serving the old model, and `GET /runs/{run}`
    and /admin/reload say why.
    """
    import inspect
    import os
    import signal

    from uvicorn import Server
    from uvicorn.supervisors.multiprocess import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:
            for worker in self.processes:
                if worker.pid is not None and worker.process.is_alive():
                    try:
                        os.kill(worker.pid, signal.SIGHUP)
                    except ProcessLookupError:  # it just exited: the supervisor starts a fresh one
                        pass

    sock.set_inheritable(True)
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # the releases that still take it
        Supervisor(config, target=Server(config).run, sockets=[sock]).run()
    else:
        Supervisor(config, sockets=[sock]).run()


def register(app: typer.Typer) -> None:
    @app.command("serve", help=HELP)
    def serve(
        runs: Annotated[list[str], typer.Argument(help="Runs to serve (see `recsys runs`).", show_default=False)],
        host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")] = 8000,
        workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes (each loads the runs).")] = 1,
        default: Annotated[Optional[str], typer.Option(
            "--default", help="Run used when a request names none (default: the only run, if one).",
            show_default=False)] = None,
        api_key: Annotated[Optional[str], typer.Option(
            "--api-key", envvar="RECSYS_API_KEY", help="Require this key (X-API-Key, Authorization: Bearer, or "
            "the HTTP Basic password) on every endpoint but /health, /docs included. Default: $RECSYS_API_KEY.", show_default=False, show_envvar=False)] = None,
        insecure: Annotated[bool, typer.Option(
            "--insecure", help="Allow a non-loopback --host without an API key.")] = False,
        cache_size: Annotated[int, typer.Option(
            "--cache-size", min=0, help="Recommendation lists kept in the LRU cache (0: no cache).")] = 10_000,
        max_batch: Annotated[int, typer.Option(
            "--max-batch", min=1, help="Most users (or pairs) in one POST; more is a 413.")] = 10_000,
        threads: Annotated[int, typer.Option(
            "--threads", min=1, help="Compute threads per request (Numba kernels, batch scoring). Requests run side "
            "by side, so 1 uses the cores best; more lowers one big batch's latency on an idle machine.")] = 1,
        mmap: Annotated[bool, typer.Option(
            "--mmap/--no-mmap", help="Map the runs' arrays from arrays.npz (pages shared by workers and touched on "
            "demand) instead of reading them. Retraining with --force is safe; never overwrite a served "
            "run's files in place.")] = True,
        ui: Annotated[bool, typer.Option(
            "--ui", help="Also serve the dashboard at http://HOST:PORT/ui/ (a page over the same JSON API).")] = False,
        artifacts_dir: ArtifactsDirOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        import json
        import os
        import signal

        from recsys_cli.errors import UsageError

        # Before Numba is imported (it reads NUMBA_NUM_THREADS once); workers inherit both.
        os.environ["RECSYS_THREADS"] = os.environ["NUMBA_NUM_THREADS"] = str(threads)
        try:
            import uvicorn

            from recsys_cli.serve.app import CONFIG_ENV, serve_app
        except ImportError as exc:
            raise UsageError(f"recsys serve needs the serve extra: pip install 'recsys-cli[serve]' ({exc})") from None
        if not is_loopback(host) and not api_key and not insecure:
            raise UsageError(f"refusing to serve on {host} without an API key: set --api-key or $RECSYS_API_KEY, "
                             "or pass --insecure")
        config = dict(runs=list(runs), default=default, cache_size=cache_size, api_key=api_key or None,
                      max_batch=max_batch, mmap=mmap, ui=ui, artifacts_dir=str(artifacts_dir) if artifacts_dir else None,
                      data_dir=str(data_dir) if data_dir else None)
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; these handlers make that a clean exit 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        from recsys_cli.serve.middleware import UVICORN_LOG_CONFIG

        options = dict(host=host, port=port, access_log=False, log_level="warning", timeout_graceful_shutdown=30,
                       server_header=False, log_config=UVICORN_LOG_CONFIG)  # uvicorn's own lines as JSON too
        if workers == 1:
            application = serve_app(**config, handle_sighup=True, single_thread_blas=True, server_process=True)
            sock = listen(host, port)  # bound here: a busy port is one clear error line, and --port 0 works
            where = f"http://{host}:{sock.getsockname()[1]}"
            extra = f"; dashboard: {where}/ui/" if ui else ""
            typer.echo(f"serving {', '.join(runs)} on {where} (docs: {where}/docs{extra}; pid {os.getpid()})", err=True)
            uvicorn.Server(uvicorn.Config(application, **options)).run(sockets=[sock])
        else:
            from recsys_cli.api import load_run

            for name in runs:  # fail here, once, rather than in every worker
                load_run(name, artifacts_dir=artifacts_dir)
            sock = listen(host, port)
            where = f"http://{host}:{sock.getsockname()[1]}"
            os.environ[CONFIG_ENV] = json.dumps({**config, "supervisor_pid": os.getpid()})
            extra = f"; dashboard: {where}/ui/" if ui else ""
            typer.echo(f"serving {', '.join(runs)} on {where} with {workers} workers (docs: {where}/docs{extra}; "
                       f"pid {os.getpid()})", err=True)
            supervise(uvicorn.Config("recsys_cli.serve.app:app_from_env", factory=True, workers=workers, **options),
                      sock)
        typer.echo("server stopped", err=True)
