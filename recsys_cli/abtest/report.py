"""The A/B figure: its tidy tables and the PNG/SVG (`recsys abtest --plot`). The rich tables live in output.abtest."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def check_plot_path(path) -> Path:
    """Fail before the work: a suffix other than .png/.svg, no matplotlib or a folder in the file's place is
    exit 2, a folder that cannot be written exit 7 (the same rules as tune, benchmark and bandit --plot)."""
    from recsys_cli.figures.plots import check_plot_path as check

    check(path)
    return Path(path)


def plot_tables(result: dict, bins: int = 50) -> dict:
    """The tidy tables behind the A/B figure.

    "arms": arm, label, users, user_ctr_mean, ci_low, ci_high (t interval at the test's level);
    "lift": the bootstrap distribution of B - A as a histogram (lift_low, lift_high, resamples),
    or without resamples the normal approximation of Welch's difference (lift, density);
    "lift_ci": the interval drawn on it (source, ci_low, ci_high).
    """
    import polars as pl
    from scipy import stats

    alpha = result["settings"]["alpha"]
    arms = []
    for arm in result["arms"]:
        n, sd, mean = arm["users"], arm["user_ctr_sd"], arm["user_ctr_mean"]
        half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n) if n > 1 and math.isfinite(sd) else 0.0
        arms.append({"arm": arm["arm"], "label": f"{arm['arm']}: {arm['run']}", "users": n, "user_ctr_mean": mean,
                     "ci_low": mean - half, "ci_high": mean + half})
    samples = result.get("_lift_samples")
    welch = result["tests"]["user_welch_t"]
    if samples is not None and len(samples):
        counts, edges = np.histogram(np.asarray(samples, dtype=np.float64), bins=bins)
        lift = pl.DataFrame({"lift_low": edges[:-1], "lift_high": edges[1:], "resamples": counts.astype(np.int64)})
        boot = result["tests"]["bootstrap"]
        ci = {"source": f"bootstrap ({boot['n_boot']:,} resamples)", "ci_low": boot["ci_low"], "ci_high": boot["ci_high"]}
    else:
        a, b = result["arms"]
        se = math.sqrt(sum(arm["user_ctr_sd"] ** 2 / arm["users"] for arm in (a, b)))
        xs = np.linspace(welch["diff"] - 4 * se, welch["diff"] + 4 * se, 200) if se > 0 else np.array([welch["diff"]])
        lift = pl.DataFrame({"lift": xs, "density": stats.norm.pdf(xs, welch["diff"], se if se > 0 else 1.0)})
        ci = {"source": "normal approximation", "ci_low": welch["ci_low"], "ci_high": welch["ci_high"]}
    return {"arms": pl.DataFrame(arms), "lift": lift, "lift_ci": pl.DataFrame([ci])}


def plot_abtest(result: dict, path: Path) -> Path:
    """PNG or SVG (by the suffix): per-user CTR of each arm with its CI, and the distribution of the lift;
    written atomically."""
    path = check_plot_path(path)
    from recsys_cli.figures import builders, render

    tables = plot_tables(result)
    fig = builders.abtest(tables["arms"], tables["lift"], tables["lift_ci"], alpha=result["settings"]["alpha"],
                          title=result["winner"]["message"])
    try:
        return render.save(fig, path, path.suffix.lstrip(".").lower())
    finally:
        render.close(fig)
