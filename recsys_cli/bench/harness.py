"""`run_benchmark`: plan the units (data steps, our models, peers), run each in a fresh process, compare.

Every unit runs in its own spawned process by default (`isolate=True`): Numba compile time is
then what a user's first call pays (JIT or on-disk cache load), and peak memory belongs to that
model alone. Rows follow measure.ROW_KEYS; ratios are ours/peer in seconds (< 1: we are
faster), computed from throughput when the peer did a different amount of work (Surprise's
recommend runs on a sample of users).
"""

from __future__ import annotations

from typing import Any

from recsys_cli import settings
from recsys_cli.bench.datasets import generate_kwargs, parse_scale, prepare
from recsys_cli.bench.measure import DATA_STEPS, MODEL_STEPS, PER_ITERATION, STEPS, THROUGHPUT_UNITS, make_row
from recsys_cli.bench.peers import (
    AT_PEER_DEFAULTS,
    COUNTERPARTS,
    PEERS,
    SURPRISE_RECOMMEND_USERS,
    peer_input,
    peer_missing,
    peer_params,
)
from recsys_cli.errors import RecsysError, UsageError
from recsys_cli.progress import NullProgress

DEFAULT_MODELS = ("svd", "ials", "bpr", "item-knn")


def parse_list(text: str | list[str] | None, valid: tuple[str, ...] | None, what: str) -> list[str]:
    """Comma-separated names, de-duplicated in order; UsageError for a name outside `valid`."""
    if text is None:
        return []
    parts = text if isinstance(text, list) else [text]
    names: list[str] = []
    for part in parts:
        for name in (p.strip() for p in part.split(",")):
            if name and name not in names:
                names.append(name)
    if valid is not None:
        bad = [n for n in names if n not in valid]
        if bad:
            raise UsageError(f"unknown {what} {', '.join(map(repr, bad))}; choose from {', '.join(valid)}")
    if not names:
        raise UsageError(f"--{what}s needs at least one name")
    return names


def _model_class(name: str, explicit: bool):
    """(class, None) or (None, reason it is skipped); an explicitly requested unknown name is a UsageError."""
    from recsys_cli.models.registry import get_model_class

    try:
        return get_model_class(name), None
    except UsageError:
        if explicit:
            raise
        return None, "not registered in this version of recsys"
    except ImportError as exc:
        return None, f"registered but cannot be imported ({exc})"


class _Plan:
    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self.units: list[dict[str, Any]] = []
        self.rows: list[tuple[int, dict[str, Any]]] = []  # (position among units, row) for skipped rows
        self.pairs: list[tuple[str, str, str]] = []
        self.peer_settings: list[dict[str, Any]] = []
        self.labels: set[str] = set()

    def add(self, **task: Any) -> None:
        self.units.append({**self.base, **task})

    def skip(self, model: str | None, implementation: str, reason: str) -> None:
        self.rows.append((len(self.units), make_row(model, implementation, None, self.base["scale"], skipped=reason)))

    def add_ours(self, label: str, name: str, preset: str | None, split: str) -> None:
        if label not in self.labels:
            self.labels.add(label)
            self.add(kind="recsys", model=label, name=name, preset=preset, split=split,
                     params=self.base.get("model_params", {}).get(name))


def plan(models: list[str], explicit: bool, peers: list[str], steps: list[str], base: dict[str, Any]) -> _Plan:
    """The units to run, the skipped rows (unavailable models and peers) and the peer pairs."""
    from recsys_cli.models.registry import create_model

    p = _Plan(base)
    if any(s in DATA_STEPS for s in steps):
        p.add(kind="data")
    if not any(s in MODEL_STEPS for s in steps):
        return p
    missing = {peer: peer_missing(peer) for peer in peers}
    matched = dict.fromkeys(peers, False)
    for name in models:
        cls, reason = _model_class(name, explicit)
        if cls is None:
            p.skip(name, "recsys", reason)
        else:
            split = "random" if cls.predicts_ratings else "user"
            p.add_ours(name, name, None, split)
        for peer in peers:
            algorithm = COUNTERPARTS[peer].get(name)
            if algorithm is None:
                continue
            matched[peer] = True
            if cls is None:
                p.skip(name, peer, f"our {name!r} is not available, so there is nothing to compare {peer} with")
                continue
            preset = peer if algorithm in AT_PEER_DEFAULTS.get(peer, ()) and peer in cls.Config.PRESETS else None
            label = f"{name}@{preset}" if preset else name
            if missing[peer]:
                p.skip(label, peer, missing[peer])
                continue
            p.add_ours(label, name, preset, split)
            config = create_model(name, base.get("model_params", {}).get(name), preset).config
            params, spec = peer_params(peer, algorithm, name, config), peer_input(algorithm, config)
            p.add(kind="peer", model=label, peer=peer, algorithm=algorithm, params=params, input=spec, split=split)
            p.pairs.append((label, peer, algorithm))
            p.peer_settings.append({"model": label, "peer": f"{peer}:{algorithm}", "params": params, "input": spec})
    for peer, hit in matched.items():
        if not hit:
            have = ", ".join(sorted(COUNTERPARTS[peer]))
            p.skip(None, peer, f"no {peer} counterpart among the benchmarked models ({peer} covers: {have})")
    return p


def _execute(task: dict[str, Any], isolate: bool) -> list[dict[str, Any]]:
    from recsys_cli.bench.units import run_unit

    if not isolate:
        return run_unit(task)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(run_unit, task).result()
    except BrokenProcessPool:
        what = f"{task.get('model') or 'data steps'} ({task.get('peer', 'recsys')})"
        if task["kind"] == "peer":
            return [make_row(task["model"], task["peer"], None, task["scale"],
                             skipped="the worker process died (out of memory or killed)")]
        raise RecsysError(f"benchmark worker for {what} died (out of memory or killed)") from None


def compute_ratios(rows: list[dict[str, Any]], pairs: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """ours/peer seconds per step and pair (throughput-based when the amount of work differs)."""
    done = {(r["model"], r["implementation"], r["step"]): r for r in rows if "skipped" not in r and r["seconds"]}
    out = []
    for label, peer, algorithm in pairs:
        for step in MODEL_STEPS:
            ours, theirs = done.get((label, "recsys", step)), done.get((label, peer, step))
            if ours is None or theirs is None:
                continue
            if ours["throughput"] and theirs["throughput"]:
                ratio = theirs["throughput"] / ours["throughput"]
            else:
                ratio = ours["seconds"] / theirs["seconds"]
            out.append({"model": label, "peer": f"{peer}:{algorithm}", "step": step, "ratio": _sig4(ratio)})
            if step == "fit":  # and per iteration/epoch, where both sides report it (iterative models)
                a, b = ours["metrics"].get(PER_ITERATION), theirs["metrics"].get(PER_ITERATION)
                if a and b:
                    out.append({"model": label, "peer": f"{peer}:{algorithm}", "step": "iteration",
                                "ratio": _sig4(a / b)})
    return out


def _sig4(x: float) -> float:
    """x to 4 significant digits: a 7000x speed-up stays 0.0001372, not 0.0001 (or 0.0)."""
    return float(f"{x:.4g}")


def run_benchmark(
    *,
    scale: str = "ml-100k",
    models: str | list[str] | None = None,
    peers: str | list[str] | None = None,
    steps: str | list[str] | None = None,
    repeat: int = 3,
    threads: int | None = None,
    data_dir=None,
    seed: int = settings.DEFAULT_SEED,
    isolate: bool = True,
    progress=None,
    params: dict[str, dict[str, Any]] | None = None,
    engines: str | list[str] | None = None,
    spark_master: str | None = None,
) -> dict[str, Any]:
    """Benchmark models (and peers) at a scale; returns the report dict (machine, scale, rows, ratios ...).

    `params` overrides hyperparameters per model ({"ials": {"factors": 64}}); peers get the translated values.
    `engines` "local,spark": also train als/ials with Spark MLlib (spark_master, default local[2];
    "standalone": a master and a worker started on 127.0.0.1), side by side with ours.
    """
    from recsys_cli.bench.machine import PeakRSS, machine_info

    progress = progress or NullProgress()
    parsed = parse_scale(scale)
    step_list = [s for s in STEPS if s in parse_list(steps, STEPS, "step")] if steps is not None else list(STEPS)
    peer_list = parse_list(peers, PEERS, "peer") if peers is not None else []
    explicit = models is not None
    model_list = parse_list(models, None, "model") if explicit else list(DEFAULT_MODELS)
    if repeat < 1:
        raise UsageError("--repeat must be at least 1")
    if threads is not None and threads < 1:
        raise UsageError("--threads must be at least 1")
    n_threads = threads or settings.threads()
    if explicit:
        for name in model_list:
            _model_class(name, True)  # unknown names fail now, before any data work

    engine_list = parse_list(engines, ("local", "spark"), "engine") if engines is not None else ["local"]
    data = prepare(parsed, data_dir=data_dir, seed=seed, progress=progress)
    base = {
        "model_params": params or {},
        "scale": parsed.label, "steps": step_list, "repeat": repeat, "threads": n_threads, "seed": seed,
        "generate": generate_kwargs(parsed),
        "dataset": {"name": data.name, "data_dir": str(data.data_dir), "source": data.source,
                    "raw_path": str(data.raw_path) if data.raw_path else None},
    }
    p = plan(model_list, explicit, peer_list, step_list, base)
    if "spark" in engine_list:  # our als/ials trained by Spark MLlib, paired with the local rows
        from recsys_cli.bench.spark_unit import SPARK_COUNTERPART, SPARK_PRESET

        for name in (m for m in model_list if m in ("als", "ials")):
            # Both engines at the `spark` preset (exact solves; ials weighted-lambda): the same objective,
            # so every hyperparameter maps exactly and quality can be compared.
            split, label = "random" if name == "als" else "user", f"{name}@{SPARK_PRESET}"
            p.add_ours(label, name, SPARK_PRESET, split)
            p.add(kind="spark", model=label, name=name, preset=SPARK_PRESET, split=split, spark_master=spark_master,
                  params=base["model_params"].get(name))
            p.pairs.append((label, "spark", SPARK_COUNTERPART))
        if "local" not in engine_list:
            p.units = [u for u in p.units if u["kind"] != "recsys"]
    rows: list[dict[str, Any]] = []
    progress.start(len(p.units), "benchmark")
    for k, task in enumerate(p.units):
        rows.extend(row for pos, row in p.rows if pos == k)
        desc = task.get("model") or "data steps"
        impl = f"{task['peer']}:{task['algorithm']}" if task["kind"] == "peer" else (
            "spark" if task["kind"] == "spark" else "recsys")
        progress.log(f"benchmark [{k + 1}/{len(p.units)}] {desc} ({impl}) on {parsed.label}")
        rows.extend(_execute(task, isolate))
        progress.advance(1)
    rows.extend(row for pos, row in p.rows if pos >= len(p.units))
    spark_notes = []
    if "spark" in engine_list:
        from recsys_cli.bench.spark_unit import spark_ratio_note

        spark_notes.append(spark_ratio_note())
    return {
        "machine": machine_info(),
        "scale": parsed.label,
        "dataset": data.describe(),
        "settings": {
            "models": model_list, "peers": peer_list, "steps": step_list, "repeat": repeat,
            "threads": n_threads, "seed": seed, "isolated": isolate, "memory": PeakRSS.method(),
            "throughput_units": {s: THROUGHPUT_UNITS[s] for s in step_list}, "peer_params": p.peer_settings,
        },
        "rows": rows,
        "ratios": compute_ratios(rows, p.pairs),
        "notes": _notes(rows, data.source, parsed, isolate, bool(p.pairs)) + spark_notes,
    }


def _notes(rows: list[dict[str, Any]], source: str, scale, isolate: bool, peers: bool) -> list[str]:
    notes = [
        "seconds: median of the repeats after a warm-up call on a small input; compile_seconds: that "
        "warm-up for our Numba code" + (" in a fresh process (JIT or cache load)" if isolate else "")
    ]
    if peers:
        notes.append("ratio = ours / peer seconds for the same work: < 1 means recsys is faster; step "
                     "'iteration' compares the median seconds of one training iteration/epoch (s/iter)")
    if source == "synthetic":
        shape = f"shaped like {scale.release}, not the real release" if scale.release else "MovieLens-shaped"
        notes.append(f"data: synthetic ratings from `recsys generate`, {shape}")
    if any(r["implementation"] == "surprise" and r["step"] == "recommend" for r in rows):
        notes.append(f"surprise recommend: timed on {SURPRISE_RECOMMEND_USERS} users (no batch top-N: every "
                     "unseen item predicted one by one); its ratio compares users/s")
    return notes
