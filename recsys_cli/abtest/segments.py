"""Per-segment comparison: user activity tertiles and, where the release has them, demographics.

Every segment gets Welch's t-test on per-user CTR (the primary test); the p-values of all
segments are then adjusted together with Holm's step-down method, and a segment counts as
significant only on its adjusted p-value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from recsys_cli.abtest.statistics import holm, user_ctr, welch_ttest

AGE_BANDS = ((0, 18, "<18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 50, "45-49"),
             (50, 56, "50-55"), (56, 200, "56+"))


def activity_labels(train_counts: np.ndarray) -> np.ndarray:
    """'low'/'mid'/'high' tertile of training ratings per user, labelled with its count range."""
    counts = np.asarray(train_counts, dtype=np.int64)
    labels = np.empty(len(counts), dtype=object)
    if len(counts) == 0:
        return labels
    q1, q2 = np.quantile(counts, [1 / 3, 2 / 3])
    groups = np.where(counts <= q1, 0, np.where(counts <= q2, 1, 2))
    for g, name in enumerate(("low", "mid", "high")):
        sel = groups == g
        if sel.any():
            labels[sel] = f"{name} ({counts[sel].min()}-{counts[sel].max()} ratings)"
    return labels


def age_band(age: int) -> str:
    """ML-1M style age band; ML-1M's age codes (1, 18, 25, ...) fall into the band they name."""
    for lo, hi, name in AGE_BANDS:
        if lo <= age < hi:
            return name
    return "unknown"


def demographic_labels(users_parquet: Path, raw_users: np.ndarray) -> dict[str, np.ndarray]:
    """gender, age band and occupation per raw user id from users.parquet ({} when absent)."""
    if not Path(users_parquet).exists():
        return {}
    import pyarrow.parquet as pq

    table = pq.read_table(users_parquet)
    cols = set(table.column_names)
    ids = np.asarray(table.column("user_id").to_numpy(), dtype=np.int64)
    pos = {int(u): k for k, u in enumerate(ids)}
    rows = [pos.get(int(u), -1) for u in raw_users]
    out: dict[str, np.ndarray] = {}
    for family, column, fn in (("gender", "gender", str), ("age", "age", lambda a: age_band(int(a))),
                               ("occupation", "occupation", str)):
        if column not in cols:
            continue
        values = table.column(column).to_pylist()
        labels = np.array(
            [fn(values[r]) if r >= 0 and values[r] is not None else "unknown" for r in rows], dtype=object
        )
        out[family] = labels
    return out


def _sort_key(label: str):
    # Keep tertiles and age bands in their natural order, everything else alphabetical.
    for k, prefix in enumerate(("low", "mid", "high")):
        if label.startswith(prefix + " ("):
            return (0, k, label)
    for k, (_, _, name) in enumerate(AGE_BANDS):
        if label == name:
            return (1, k, label)
    return (2, 0, label)


def segment_table(families: dict[str, np.ndarray], arm: np.ndarray, clicks: np.ndarray, impressions: np.ndarray,
                  *, alpha: float, alternative: str) -> list[dict]:
    """One row per (family, segment): users, per-user CTR per arm, lift, Welch p and Holm-adjusted p."""
    rows = []
    arm = np.asarray(arm)
    for family, labels in families.items():
        for value in sorted(set(labels.tolist()), key=_sort_key):
            sel = labels == value
            a, b = sel & (arm == 0), sel & (arm == 1)
            x_a, x_b = user_ctr(clicks[a], impressions[a]), user_ctr(clicks[b], impressions[b])
            test = welch_ttest(x_a, x_b, alpha=alpha, alternative=alternative)
            rows.append({
                "segment": family,
                "value": value,
                "users_a": int(a.sum()),
                "users_b": int(b.sum()),
                "ctr_a": float(x_a.mean()) if len(x_a) else math.nan,
                "ctr_b": float(x_b.mean()) if len(x_b) else math.nan,
                "lift": test.diff,
                "rel_lift": test.rel_lift,
                "ci_low": test.ci_low,
                "ci_high": test.ci_high,
                "p_value": test.p_value,
            })
    adjusted = holm([r["p_value"] for r in rows])
    for r, p in zip(rows, adjusted, strict=True):
        r["p_holm"] = float(p)
        r["significant"] = bool(math.isfinite(p) and p < alpha)
    return rows
