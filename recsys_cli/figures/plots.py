"""`--plot FILE` of `recsys tune` and `recsys benchmark`: a result dict in, one figure file out.

Each function builds the tidy table its builder reads (so the figure shows the numbers of the
JSON result) and writes PNG or SVG by the file's suffix, atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from recsys_cli.errors import UsageError


def _suffix(path: Path) -> str:
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in ("png", "svg"):
        raise UsageError(f"--plot writes .png or .svg files, got {str(path)!r}")
    return fmt


def check_plot_path(path: Path | None) -> None:
    """Fail before the work: a bad suffix, a folder in the file's place or no matplotlib is a usage error
    (exit 2), a folder that cannot be written exit 7 (`render.check_output_file`)."""
    if path is not None:
        from recsys_cli.figures.render import check_output_file, require_matplotlib

        _suffix(path)
        require_matplotlib("--plot")
        check_output_file(path, "--plot")


UNFINISHED = ("pruned", "failed", "fail", "running")  # Optuna trial states that have no final score


def tune_table(result: dict[str, Any]):
    """trial (1-based), score, std, failed, pruned_score from a tune result: a failed or pruned trial has no
    score; a pruned one keeps the mean of the folds it ran as pruned_score."""
    import polars as pl

    def failed(t: dict[str, Any]) -> bool:
        return bool(t.get("error")) or str(t.get("state") or "").lower() in UNFINISHED or t.get("score") is None

    def pruned(t: dict[str, Any]) -> float | None:
        ok = str(t.get("state") or "").lower() == "pruned" and not t.get("error") and t.get("score") is not None
        return float(t["score"]) if ok and math.isfinite(float(t["score"])) else None

    rows = [{"trial": int(t["trial"]) + 1, "score": None if failed(t) else t.get("score"),
             "std": t.get("std"), "failed": failed(t), "pruned_score": pruned(t)} for t in result.get("trials", [])]
    return pl.DataFrame(rows, schema={"trial": pl.Int64, "score": pl.Float64, "std": pl.Float64, "failed": pl.Boolean,
                                      "pruned_score": pl.Float64})


def benchmark_table(report: dict[str, Any]):
    """measure ('MODEL STEP vs PEER'), model, peer, step, ratio from a benchmark report's `ratios`."""
    import polars as pl

    rows = [{"measure": f"{r['model']} {r['step']} vs {r['peer']}", "model": r["model"], "peer": r["peer"],
             "step": r["step"], "ratio": r.get("ratio")} for r in report.get("ratios") or []]
    return pl.DataFrame(rows, schema={"measure": pl.String, "model": pl.String, "peer": pl.String, "step": pl.String,
                                      "ratio": pl.Float64})


def _write(fig, path: Path) -> Path:
    from recsys_cli.figures import render

    try:
        return render.save(fig, path, _suffix(path))
    finally:
        render.close(fig)


def plot_tune(result: dict[str, Any], path: Path) -> Path:
    """Score per trial and the best so far (direction from the result)."""
    from recsys_cli.figures.builders import tune_trials

    table = tune_table(result)
    if table["score"].drop_nulls().is_empty():
        raise UsageError("--plot: every trial failed, nothing to plot")
    lower = str(result.get("direction", "minimize")).startswith("min")
    return _write(tune_trials(table, metric=result.get("metric", "score"), lower_is_better=lower), path)


def plot_benchmark(report: dict[str, Any], path: Path) -> Path:
    """Ours / peer ratios as bars (log scale)."""
    from recsys_cli.figures.builders import benchmark_ratios

    table = benchmark_table(report)
    if table.is_empty():
        raise UsageError("--plot: the benchmark has no peer ratios to plot (add --peers)")
    return _write(benchmark_ratios(table), path)


def bandit_table(result: dict[str, Any]):
    """period, first_round, last_round, arm, share (tidy) from a bandit result's `allocation`."""
    import polars as pl

    arms = [a["arm"] for a in result.get("arms", [])]
    rows = [{"period": row["period"], "first_round": row["first_round"], "last_round": row["last_round"], "arm": arm,
             "share": float(row.get(arm, 0.0))} for row in result.get("allocation", []) for arm in arms]
    return pl.DataFrame(rows, schema={"period": pl.String, "first_round": pl.Int64, "last_round": pl.Int64,
                                      "arm": pl.String, "share": pl.Float64})


def plot_bandit(result: dict[str, Any], path: Path) -> Path:
    """Each arm's share of the users per round (or decile of rounds), stacked, against the equal split."""
    from recsys_cli.figures.builders import bandit_allocation

    fig = bandit_allocation(bandit_table(result), policy=result.get("policy", {}).get("name", ""),
                            best=result.get("best_arm"))
    return _write(fig, path)
