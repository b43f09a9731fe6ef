"""A tuning search as tables for a person: the live trial lines and the final trials + best summary."""

from __future__ import annotations

from typing import Any


def show_value(value: Any) -> str:
    """A parameter value as typed (floats in %g so 1e-05 does not print as 0.0000)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def trial_line(res: dict[str, Any], total: int, metric: str) -> str:
    params = " ".join(f"{k}={show_value(v)}" for k, v in res["params"].items())
    head = f"trial {res.get('done', res['trial'] + 1)}/{total}"
    if res.get("done", res["trial"] + 1) != res["trial"] + 1:  # resumed: numbers skip trials cut off earlier
        head += f" (#{res['trial'] + 1})"
    if res["error"]:
        return f"{head}: {params}  failed: {res['error']}"
    fit = f"  fit {res['fit_seconds']:.2f} s" if res["fit_seconds"] is not None else ""
    pruned = f"  pruned after {len(res['fold_scores'])} fold(s)" if res.get("state") == "pruned" else ""
    return f"{head}: {params}  {metric}={res['score']:.4f} ± {res['std']:.4f}{fit}{pruned}"


def score_cell(r: dict[str, Any]) -> str:
    if r["error"]:
        return "failed"
    return f"{r['score']:.4f} (pruned)" if r.get("state") == "pruned" else f"{r['score']:.4f}"


def render_tune(result: dict[str, Any]) -> None:
    from recsys_cli.output import emit

    metric = result["metric"]
    rows = []
    for t in result["trials"]:
        row = {"trial": t["trial"] + 1, **{k: show_value(v) for k, v in t["params"].items()}}
        row[metric] = score_cell(t) if t["error"] or t.get("state") == "pruned" else f"{t['score']:.4f} ± {t['std']:.4f}"
        row["fit s"] = "" if t["fit_seconds"] is None else f"{t['fit_seconds']:.2f}"
        row["best"] = "*" if t["trial"] == result["best_trial"] else ""
        rows.append(row)
    # a title that fits over a narrow table; how the search ran is the table's caption
    emit(rows, "table", title=f"{result['model']} on {result['dataset']}: {result['cv']}-fold CV {metric}",
         caption=f"{result['direction']}; sampler {result['sampler']}, pruner {result['pruner']}")
    summary = {
        "best params": " ".join(f"{k}={show_value(v)}" for k, v in result["best_params"].items()),
        f"cv {metric}": f"{result['best_score']:.4f} ± {result['best_std']:.4f}",
    }
    if result["holdout"]:
        h = result["holdout"]
        summary[f"holdout {metric}"] = h["score"]
        summary["holdout"] = f"{h['n_test']:,} held-out ratings, tuned on {h['n_tune']:,}"
    if result.get("run"):
        summary["run"] = result["run"]["run"]
    emit(summary, "table", title="best")
