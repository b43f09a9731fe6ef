"""Timing, memory and quality measurements shared by our models and the peers, and the row shape.

Protocol for every step: one warm-up call on a small input first (for our Numba models its time
is `compile_seconds`: JIT compilation, or loading the on-disk cache, in a fresh process), then
`repeat` full runs; `seconds` is their median and `peak_rss_mb` the highest per-run peak
(see machine.PeakRSS). The previous run's result is released before the next one starts so it
does not count against it. Throughput units by step: generate/preprocess/split/fit ratings/s,
predict predictions/s, recommend users/s (top-10, seen items excluded), evaluate test ratings/s
(rating models) or test users/s (ranking models). The latency step times what a user waits for
in a fresh process: `recsys recommend RUN --user U -n 10` (seconds), `recsys --help` (metric
cli_help_s) and a shell completion request, the Tab in `recsys recommend b<TAB>` completing the
run name (metric cli_complete_s).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_cli.bench.machine import PeakRSS

STEPS = ("generate", "preprocess", "split", "fit", "predict", "recommend", "evaluate", "latency")
DATA_STEPS = STEPS[:3]
MODEL_STEPS = STEPS[3:]
ROW_KEYS = (
    "model", "implementation", "step", "scale", "seconds", "compile_seconds", "peak_rss_mb",
    "throughput", "artifact_mb", "metrics",
)
THROUGHPUT_UNITS = {
    "generate": "ratings/s", "preprocess": "ratings/s", "split": "ratings/s", "fit": "ratings/s",
    "predict": "predictions/s", "recommend": "users/s", "evaluate": "ratings/s or users/s",
    "latency": "none (seconds: `recsys recommend RUN --user U -n 10` in a fresh process)",
}
TOP_N = 10
PER_ITERATION = "s_per_iter"  # fit-row metric: median seconds of one iteration/epoch (iterative models)


@dataclass
class Measured:
    seconds: float
    compile_seconds: float | None
    peak_rss_mb: float | None
    result: Any


def measure(run: Callable[[], Any], *, repeat: int, warmup: Callable[[], Any] | None = None) -> Measured:
    """Warm up once (timed as compile_seconds), then run `repeat` times: median seconds, peak memory."""
    compile_seconds = None
    if warmup is not None:
        t0 = time.perf_counter()
        warmup()
        compile_seconds = time.perf_counter() - t0
    times: list[float] = []
    peak: float | None = None
    result = None
    for _ in range(max(1, repeat)):
        result = None
        gc.collect()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - t0)
        if mem.peak_mb is not None:
            peak = mem.peak_mb if peak is None else max(peak, mem.peak_mb)
    return Measured(statistics.median(times), compile_seconds, peak, result)


def _sig(seconds: float) -> float:
    """Six significant digits: sub-millisecond steps keep their precision (throughput = work / seconds)."""
    return float(f"{seconds:.6g}")


def make_row(
    model: str | None,
    implementation: str,
    step: str | None,
    scale: str,
    measured: Measured | None = None,
    *,
    work: float | None = None,
    artifact_mb: float | None = None,
    metrics: dict[str, Any] | None = None,
    compile_time: bool = True,
    skipped: str | None = None,
) -> dict[str, Any]:
    """One result row with exactly ROW_KEYS (plus "skipped" with the reason when nothing ran)."""
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update(model=model, implementation=implementation, step=step, scale=scale, metrics=metrics or {})
    if measured is not None:
        row["seconds"] = _sig(measured.seconds)
        if compile_time and measured.compile_seconds is not None:
            row["compile_seconds"] = _sig(measured.compile_seconds)
        if measured.peak_rss_mb is not None:
            row["peak_rss_mb"] = round(measured.peak_rss_mb, 1)
        if work is not None and measured.seconds > 0:
            row["throughput"] = round(work / measured.seconds, 2)
    if artifact_mb is not None:
        row["artifact_mb"] = round(artifact_mb, 3)
    if skipped is not None:
        row["skipped"] = skipped
    return row


# ----- quality: one definition for our models and the peers ---------------------------------


def rating_quality(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of predicted ratings."""
    from recsys_cli.evaluation import metrics as M

    return {"rmse": round(M.rmse(pred, truth), 6), "mae": round(M.mae(pred, truth), 6)}


def ranking_setup(train, test) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, rel_indptr, rel_indices): test users that have training ratings; every held-out item is relevant."""
    from recsys_cli.evaluation.protocols import EvalSettings, relevant_csr

    users = np.unique(test.users)
    users = users[train.user_counts()[users] > 0].astype(np.int32)
    indptr, indices = relevant_csr(test, users, EvalSettings(relevance="any"))
    return users, indptr, indices


AUC_SAMPLES = 200_000


def train_auc(train, X: np.ndarray, Y: np.ndarray, item_bias: np.ndarray | None, seed: int) -> float:
    """Sampled training AUC of factor scores X @ Y.T (+ item_bias): the same estimator for us and implicit."""
    from recsys_cli.models._kernels.bpr import bpr_auc

    csr = train.csr()
    bias = np.zeros(Y.shape[0], np.float32) if item_bias is None else np.asarray(item_bias, np.float32)
    return round(float(bpr_auc(csr.indptr, csr.indices, np.ascontiguousarray(X, np.float32),
                               np.ascontiguousarray(Y, np.float32), bias, AUC_SAMPLES, seed)), 6)


def ranking_quality(recs: np.ndarray, rel_indptr: np.ndarray, rel_indices: np.ndarray, n_items: int) -> dict[str, float]:
    """nDCG, precision and recall at 10 of top-10 index lists against held-out items."""
    from recsys_cli.evaluation.ranking_metrics import ranking_metrics

    out = ranking_metrics(np.asarray(recs, np.int64), rel_indptr, rel_indices, ks=(TOP_N,), n_items=n_items)
    keys = [f"{k}@{TOP_N}" for k in ("ndcg", "precision", "recall")]
    return {k: round(out[k], 6) for k in keys} | {"users_evaluated": int(out["users_evaluated"])}
