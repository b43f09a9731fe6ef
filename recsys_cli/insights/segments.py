"""Genre preference by demographic segment, with a test that can say "no".

The unit is the user, not the rating: a heavy rater's 700 ratings are one person's taste,
and a test over ratings would treat them as 700 independent draws and find "significant"
lifts everywhere. For each user we take the share of their ratings that fall on movies of a
genre; for each (segment, genre) Welch's t-test compares the segment's users with every other
user who has a known value. Shares of a rare genre are mostly zeros, where the t-test's normal
approximation fails for a small segment, so a cell is tested only with at least MIN_USERS users
on each side and MIN_EXPECTED ratings of the genre expected in the segment at the others' rate.
A two-valued dimension (gender) is one test per genre, not two mirrored ones. The effect size is the lift, mean share in the segment over mean
share among the others, with a delta-method CI on the log scale. Every p-value of the family
(all dimensions x segments x genres tested) is Holm-adjusted, and a sentence is written only
when the adjusted p is below alpha.
"""

from __future__ import annotations

import numpy as np
import polars as pl

MIN_USERS = 10  # a segment (or its complement) with fewer users is shown but not tested
MIN_EXPECTED = 10.0  # ... and so is a genre the segment would rate fewer times than this at the others' rate
# MovieLens 1M age codes and their bands; ml-100k's exact ages are put in the same bands.
AGE_BANDS = ((0, 18, "under 18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"),
             (45, 50, "45-49"), (50, 56, "50-55"), (56, 200, "56+"))
GENDERS = {"F": "women", "M": "men"}
DIMENSIONS = ("age_band", "gender", "occupation")


def age_band(age: int | None) -> str | None:
    if age is None:
        return None
    for lo, hi, label in AGE_BANDS:
        if lo <= age < hi:
            return label
    return None


def user_genre_counts(ratings: pl.DataFrame, items: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(user ids, ratings per user, ratings per user on movies of each genre (n_users x n_genres), genres)."""
    import scipy.sparse as sp

    ig = items.select("item_id", "genres").explode("genres").drop_nulls("genres")
    genres = sorted(ig["genres"].unique().to_list())
    users, u_rows = np.unique(ratings["user_id"].to_numpy(), return_inverse=True)
    item_ids = np.union1d(items["item_id"].to_numpy(), ratings["item_id"].to_numpy())
    i_rows = np.searchsorted(item_ids, ratings["item_id"].to_numpy())
    g_index = {g: k for k, g in enumerate(genres)}
    membership = sp.csr_matrix(
        (np.ones(len(ig)), (np.searchsorted(item_ids, ig["item_id"].to_numpy()), [g_index[g] for g in ig["genres"].to_list()])),
        shape=(len(item_ids), len(genres)),
    )
    rated = sp.csr_matrix((np.ones(len(u_rows)), (u_rows, i_rows)), shape=(len(users), len(item_ids)))
    counts = np.asarray((rated @ membership).todense(), dtype=np.float64)
    totals = np.bincount(u_rows, minlength=len(users)).astype(np.float64)
    return users.astype(np.int64), totals, counts, genres


def user_segments(users: pl.DataFrame) -> pl.DataFrame:
    """user_id, age_band, gender, occupation (as strings; null where unknown)."""
    out = users.select(
        "user_id",
        age_band=pl.col("age").map_elements(age_band, return_dtype=pl.String) if "age" in users.columns else pl.lit(None, pl.String),
        gender=pl.col("gender").cast(pl.String) if "gender" in users.columns else pl.lit(None, pl.String),
        occupation=pl.col("occupation").cast(pl.String) if "occupation" in users.columns else pl.lit(None, pl.String),
    )
    return out


def welch(m1, v1, n1, m0, v0, n0):
    """Welch's t statistic, df and two-sided p (arrays), from means, sample variances and sizes."""
    from scipy import stats

    se2 = v1 / n1 + v0 / n0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (m1 - m0) / np.sqrt(se2)
        df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v0 / n0) ** 2 / (n0 - 1))
    p = 2 * stats.t.sf(np.abs(t), df)
    p = np.where(se2 > 0, p, np.where(m1 == m0, 1.0, 0.0))
    return t, df, p


def segment_lift(ratings: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame, *, alpha: float = 0.05,
                 min_users: int = MIN_USERS, min_expected: float = MIN_EXPECTED) -> pl.DataFrame:
    """dimension, segment, others (the other value of a two-valued dimension, else "others"), genre, users,
    other_users, share, other_share, lift, lift_ci_low, lift_ci_high, t, df, p_value, p_holm, significant.
    One row per (segment value, genre); p_value is null where the cell is not tested."""
    from scipy import stats

    from recsys_cli.abtest.statistics import holm

    user_ids, totals, counts, genres = user_genre_counts(ratings, items)
    shares = counts / totals[:, None]
    seg = user_segments(users)
    seg = pl.DataFrame({"user_id": user_ids}).join(seg.with_columns(pl.col("user_id").cast(pl.Int64)), on="user_id", how="left")
    z = stats.norm.ppf(1 - alpha / 2)
    blocks = []
    for dim in DIMENSIONS:
        values = seg[dim].to_numpy()
        known = np.array([v is not None for v in values])
        order = {label: k for k, (_, _, label) in enumerate(AGE_BANDS)} if dim == "age_band" else {}
        levels = sorted({v for v in values if v is not None}, key=lambda v: (order.get(v, 0), v))
        for value in levels[:1] if len(levels) == 2 else levels:  # the second of two is the mirror image
            inside = values == value
            outside = known & ~inside
            a, b = shares[inside], shares[outside]
            n1, n0 = len(a), len(b)
            m1, m0 = a.mean(axis=0) if n1 else np.full(len(genres), np.nan), b.mean(axis=0) if n0 else np.full(len(genres), np.nan)
            v1 = a.var(axis=0, ddof=1) if n1 > 1 else np.full(len(genres), np.nan)
            v0 = b.var(axis=0, ddof=1) if n0 > 1 else np.full(len(genres), np.nan)
            t, df, p = welch(m1, v1, n1, m0, v0, n0)
            with np.errstate(divide="ignore", invalid="ignore"):
                pooled_other = counts[outside].sum(axis=0) / totals[outside].sum()
            expected = totals[inside].sum() * pooled_other
            testable = (n1 >= min_users) & (n0 >= min_users) & (expected >= min_expected)
            with np.errstate(divide="ignore", invalid="ignore"):
                lift = m1 / m0
                se_log = np.sqrt(v1 / (n1 * m1**2) + v0 / (n0 * m0**2))
                ok = (m1 > 0) & (m0 > 0)
                lo = np.where(ok, lift * np.exp(-z * se_log), np.nan)
                hi = np.where(ok, lift * np.exp(z * se_log), np.nan)
            blocks.append(pl.DataFrame({
                "dimension": dim, "segment": str(value),
                "others": levels[1] if len(levels) == 2 else "others", "genre": genres, "users": n1, "other_users": n0,
                "share": m1, "other_share": m0, "lift": lift, "lift_ci_low": lo, "lift_ci_high": hi,
                "t": t, "df": df, "p_value": np.where(testable, p, np.nan),
            }, strict=False))
    if not blocks:
        return pl.DataFrame()
    table = pl.concat(blocks).with_columns(pl.col(c).fill_nan(None) for c in ("lift", "lift_ci_low", "lift_ci_high", "t", "df",
                                                                             "p_value", "share", "other_share"))
    p_all = table["p_value"].fill_null(np.nan).to_numpy()
    adjusted = holm(p_all)
    return table.with_columns(p_holm=pl.Series(adjusted).fill_nan(None)).with_columns(
        significant=pl.col("p_holm").fill_null(1.0) < alpha)


def segment_label(dimension: str, value: str) -> str:
    if value == "others":
        return "other users"
    if dimension == "gender":
        return GENDERS.get(value, f"users of gender {value}")
    if dimension == "age_band":
        return f"users aged {value}"
    return f"users with occupation {value}"


def _p(x: float) -> str:
    return f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}"


def statements(lift: pl.DataFrame, alpha: float = 0.05) -> list[str]:
    """One sentence per significant (segment, genre), strongest evidence first."""
    if lift.is_empty():
        return []
    rows = lift.filter(pl.col("significant")).sort(["p_holm", "dimension", "segment", "genre"]).iter_rows(named=True)
    out = []
    for r in rows:
        direction = "more often" if r["lift"] > 1 else "less often"
        ci = "" if r["lift_ci_low"] is None else f", {1 - alpha:.0%} CI {r['lift_ci_low']:.2f}-{r['lift_ci_high']:.2f}"
        out.append(
            f"{segment_label(r['dimension'], r['segment'])} rate {r['genre']} {direction} than {segment_label(r['dimension'], r['others'])}: "
            f"{r['share']:.1%} vs {r['other_share']:.1%} of a user's ratings (lift {r['lift']:.2f}{ci}; "
            f"Holm-adjusted p = {_p(r['p_holm'])}; {r['users']} vs {r['other_users']} users)"
        )
    return out
