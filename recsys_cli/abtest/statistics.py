"""Tests and intervals for comparing two arms; the effect is always B minus A.

The user is the randomisation unit, so the primary test is Welch's t-test on per-user CTR;
the two-proportion z-test on impressions treats every impression as independent (clicks of
one user are correlated, so it is anti-conservative) and is reported as a secondary check.
Alternatives: "two-sided", "greater" (H1: B > A), "less" (H1: B < A). One-sided tests get
one-sided confidence intervals (the open end is infinite), matching the test.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from recsys_cli.errors import UsageError

ALTERNATIVES = ("two-sided", "greater", "less")
SRM_THRESHOLD = 0.001  # the usual bar for a sample-ratio mismatch: p below it means a broken split


def check_alpha(alpha: float) -> float:
    if not (0.0 < alpha < 0.5):
        raise UsageError(f"--alpha must be between 0 and 0.5, got {alpha}")
    return float(alpha)


def check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise UsageError(f"unknown --alternative {alternative!r}; choose one of {', '.join(ALTERNATIVES)}")
    return alternative


@dataclass
class TestResult:
    """A test of B - A: statistic, p-value, estimate and its CI, absolute and relative."""

    name: str
    statistic: float
    p_value: float
    diff: float
    ci_low: float
    ci_high: float
    rel_lift: float
    rel_ci_low: float
    rel_ci_high: float
    df: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _p_value(stat: float, alternative: str, dist) -> float:
    if not math.isfinite(stat):
        return float("nan")
    if alternative == "two-sided":
        return float(min(1.0, 2.0 * dist.sf(abs(stat))))
    if alternative == "greater":
        return float(dist.sf(stat))
    return float(dist.cdf(stat))


def _interval(est: float, se: float, crit: float, alternative: str) -> tuple[float, float]:
    if not (math.isfinite(est) and math.isfinite(se)):
        return float("nan"), float("nan")
    lo, hi = est - crit * se, est + crit * se
    if alternative == "greater":
        hi = math.inf
    elif alternative == "less":
        lo = -math.inf
    return lo, hi


def _crit(alpha: float, alternative: str, dist) -> float:
    return float(dist.ppf(1 - alpha / 2 if alternative == "two-sided" else 1 - alpha))


def _relative(m_a: float, m_b: float, var_a: float, var_b: float) -> tuple[float, float]:
    """Relative lift m_b/m_a - 1 and its delta-method standard error (var_* are variances of the means)."""
    if m_a <= 0:
        return float("nan"), float("nan")
    rel = m_b / m_a - 1.0
    se = math.sqrt(var_b / m_a**2 + m_b**2 * var_a / m_a**4)
    return rel, se


def two_proportion_ztest(
    clicks_a: int, n_a: int, clicks_b: int, n_b: int, *, alpha: float = 0.05, alternative: str = "two-sided"
) -> TestResult:
    """Pooled two-proportion z-test on impressions; Wald (unpooled) CI for the difference."""
    if n_a <= 0 or n_b <= 0:
        nan = float("nan")
        return TestResult("two_proportion_z", nan, nan, nan, nan, nan, nan, nan, nan)
    p_a, p_b = clicks_a / n_a, clicks_b / n_b
    pooled = (clicks_a + clicks_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = p_b - p_a
    # Both arms all-0 or all-1: no evidence of a difference.
    z = diff / se0 if se0 > 0 else 0.0
    p = _p_value(z, alternative, stats.norm)
    va, vb = p_a * (1 - p_a) / n_a, p_b * (1 - p_b) / n_b
    crit = _crit(alpha, alternative, stats.norm)
    lo, hi = _interval(diff, math.sqrt(va + vb), crit, alternative)
    rel, rel_se = _relative(p_a, p_b, va, vb)
    rlo, rhi = _interval(rel, rel_se, crit, alternative)
    return TestResult("two_proportion_z", z, p, diff, lo, hi, rel, rlo, rhi)


def welch_ttest(x_a, x_b, *, alpha: float = 0.05, alternative: str = "two-sided") -> TestResult:
    """Welch's unequal-variance t-test of mean(x_b) - mean(x_a), Welch-Satterthwaite df and t CI."""
    a = np.asarray(x_a, dtype=np.float64)
    b = np.asarray(x_b, dtype=np.float64)
    nan = float("nan")
    if len(a) < 2 or len(b) < 2:
        return TestResult("welch_t", nan, nan, nan, nan, nan, nan, nan, nan, nan)
    m_a, m_b = float(a.mean()), float(b.mean())
    va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
    se = math.sqrt(va + vb)
    diff = m_b - m_a
    if se == 0:
        # Constant data in both arms: the t statistic is undefined (scipy returns NaN too).
        return TestResult("welch_t", nan, nan, diff, diff, diff, *_rel_point(m_a, m_b), nan)
    t = diff / se
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    dist = stats.t(df)
    p = _p_value(t, alternative, dist)
    crit = _crit(alpha, alternative, dist)
    lo, hi = _interval(diff, se, crit, alternative)
    rel, rel_se = _relative(m_a, m_b, va, vb)
    rlo, rhi = _interval(rel, rel_se, crit, alternative)
    return TestResult("welch_t", t, p, diff, lo, hi, rel, rlo, rhi, df)


def _rel_point(m_a: float, m_b: float) -> tuple[float, float, float]:
    rel = m_b / m_a - 1.0 if m_a > 0 else float("nan")
    return rel, rel, rel


def bootstrap_lift(
    x_a, x_b, *, n_boot: int, seed: int, alpha: float = 0.05, alternative: str = "two-sided"
) -> dict:
    """Percentile bootstrap of the lift in mean per-user CTR, resampling users within each arm.

    Returns the CIs (absolute and relative), the share of resamples where B beats A, and the
    resampled absolute lifts under "samples" (for plots; drop it before printing JSON).
    """
    a = np.asarray(x_a, dtype=np.float64)
    b = np.asarray(x_b, dtype=np.float64)
    if n_boot < 1 or len(a) == 0 or len(b) == 0:
        raise UsageError("the bootstrap needs --bootstrap >= 1 and users in both arms")
    rng = np.random.default_rng(seed)
    mean_a = np.empty(n_boot)
    mean_b = np.empty(n_boot)
    chunk = max(1, 4_000_000 // max(len(a), len(b)))  # bound memory: ~32 MB of indices per chunk
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        mean_a[start : start + m] = a[rng.integers(0, len(a), size=(m, len(a)))].mean(axis=1)
        mean_b[start : start + m] = b[rng.integers(0, len(b), size=(m, len(b)))].mean(axis=1)
    diff = mean_b - mean_a
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mean_a > 0, mean_b / mean_a - 1.0, np.nan)
    lo_q, hi_q = (alpha / 2, 1 - alpha / 2) if alternative == "two-sided" else (alpha, 1 - alpha)

    def ci(x: np.ndarray) -> tuple[float, float]:
        x = x[np.isfinite(x)]
        if len(x) == 0:
            return float("nan"), float("nan")
        lo, hi = float(np.quantile(x, lo_q)), float(np.quantile(x, hi_q))
        if alternative == "greater":
            hi = math.inf
        elif alternative == "less":
            lo = -math.inf
        return lo, hi

    lo, hi = ci(diff)
    rlo, rhi = ci(rel)
    return {
        "n_boot": int(n_boot),
        "diff": float(b.mean() - a.mean()),
        "ci_low": lo,
        "ci_high": hi,
        "rel_ci_low": rlo,
        "rel_ci_high": rhi,
        "prob_b_better": float((diff > 0).mean() + 0.5 * (diff == 0).mean()),
        "samples": diff,
    }


def srm_check(n_a: int, n_b: int, traffic: float, *, threshold: float = SRM_THRESHOLD) -> dict:
    """Chi-square goodness-of-fit of the observed arm sizes against the planned B share."""
    total = n_a + n_b
    exp_a, exp_b = total * (1 - traffic), total * traffic
    if total == 0:
        return {"chi2": float("nan"), "p_value": float("nan"), "mismatch": False, "expected_b_share": traffic}
    chi2 = (n_a - exp_a) ** 2 / exp_a + (n_b - exp_b) ** 2 / exp_b
    p = float(stats.chi2.sf(chi2, df=1))
    return {
        "chi2": float(chi2),
        "p_value": p,
        "threshold": threshold,
        "mismatch": bool(p < threshold),
        "expected_b_share": float(traffic),
        "observed_b_share": n_b / total,
    }


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count as tests)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def user_ctr(clicks: np.ndarray, impressions: np.ndarray) -> np.ndarray:
    """Per-user CTR for users who saw at least one item."""
    clicks = np.asarray(clicks, dtype=np.float64)
    impressions = np.asarray(impressions, dtype=np.float64)
    shown = impressions > 0
    return clicks[shown] / impressions[shown]


def arm_summary(clicks: np.ndarray, impressions: np.ndarray) -> dict:
    """Users, impressions, clicks, pooled CTR and the mean/sd of per-user CTR of one arm."""
    x = user_ctr(clicks, impressions)
    imps, cl = int(np.sum(impressions)), int(np.sum(clicks))
    return {
        "users": int(len(clicks)),
        "impressions": imps,
        "clicks": cl,
        "ctr": cl / imps if imps else float("nan"),
        "user_ctr_mean": float(x.mean()) if len(x) else float("nan"),
        "user_ctr_sd": float(x.std(ddof=1)) if len(x) > 1 else float("nan"),
    }


def decide(test: TestResult, alpha: float, alternative: str) -> dict:
    """The winner ("A", "B" or None) of a test of B - A at level alpha, with a one-line verdict."""
    significant = math.isfinite(test.p_value) and test.p_value < alpha
    winner = None
    if significant:
        if alternative == "greater":
            winner = "B"
        elif alternative == "less":
            winner = "A"
        else:
            winner = "B" if test.diff > 0 else "A"
    level = round(100 * (1 - alpha), 4)
    level_text = f"{level:g}%"
    if winner:
        loser = "A" if winner == "B" else "B"
        message = f"{winner} beats {loser} at {level_text} confidence (p = {test.p_value:.4g}, {test.name})"
    else:
        message = f"no significant difference at {level_text} confidence (p = {test.p_value:.4g}, {test.name})"
    return {"winner": winner, "significant": significant, "confidence": 1 - alpha, "test": test.name, "message": message}


def compare_arms(
    clicks_a, imps_a, clicks_b, imps_b, *, alpha: float = 0.05, alternative: str = "two-sided",
    n_boot: int = 0, seed: int = 0,
) -> dict:
    """Per-user clicks and impressions of both arms -> arms, tests (Welch primary), bootstrap, winner."""
    check_alpha(alpha)
    check_alternative(alternative)
    arms = {"A": arm_summary(clicks_a, imps_a), "B": arm_summary(clicks_b, imps_b)}
    x_a, x_b = user_ctr(clicks_a, imps_a), user_ctr(clicks_b, imps_b)
    welch = welch_ttest(x_a, x_b, alpha=alpha, alternative=alternative)
    z = two_proportion_ztest(
        arms["A"]["clicks"], arms["A"]["impressions"], arms["B"]["clicks"], arms["B"]["impressions"],
        alpha=alpha, alternative=alternative,
    )
    out = {
        "arms": arms,
        "tests": {"user_welch_t": {**welch.to_dict(), "primary": True, "unit": "user"},
                  "impression_z": {**z.to_dict(), "primary": False, "unit": "impression"}},
        "winner": decide(welch, alpha, alternative),
    }
    if n_boot > 0 and len(x_a) and len(x_b):
        out["bootstrap"] = bootstrap_lift(x_a, x_b, n_boot=n_boot, seed=seed, alpha=alpha, alternative=alternative)
    return out
