"""Sample size, power and minimum detectable effect for comparing two proportions (CTRs).

Formula (Fleiss, without continuity correction; the normal-approximation "textbook" one), with
p1 the baseline (arm A), p2 = p1 + delta (arm B), and ratio r = n_B / n_A:

    pbar = (p1 + r p2) / (1 + r)
    n_A  = (z_a sqrt(pbar qbar (1 + 1/r)) + z_b sqrt(p1 q1 + p2 q2 / r))^2 / (p1 - p2)^2

z_a = z_{1-alpha/2} (two-sided) or z_{1-alpha} (one-sided), z_b = z_{1-power}. For r = 1 this
is n = (z_a sqrt(2 pbar qbar) + z_b sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2. Each unit is one
Bernoulli trial (a user who converts or not, or an impression); n is rounded up.
"""

from __future__ import annotations

import math

from scipy import stats
from scipy.optimize import brentq

from recsys_cli.errors import UsageError

MAX_UNITS = 1e15  # more units than any experiment will see: the effect is too small to plan for


def _z_alpha(alpha: float, alternative: str) -> float:
    return float(stats.norm.ppf(1 - alpha / 2 if alternative == "two-sided" else 1 - alpha))


def _check(p1: float, alpha: float, power: float, ratio: float) -> None:
    if not (0.0 < p1 < 1.0):
        raise UsageError(f"--baseline-ctr must be between 0 and 1 (exclusive), got {p1}")
    if not (0.0 < alpha < 0.5):
        raise UsageError(f"--alpha must be between 0 and 0.5, got {alpha}")
    if not (0.0 < power < 1.0) or power <= alpha:
        raise UsageError(f"--power must be between alpha and 1, got {power}")
    if not (ratio > 0 and math.isfinite(ratio)):
        raise UsageError(f"--ratio (users in B per user in A) must be positive, got {ratio}")


def required_n(p1: float, p2: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
               alternative: str = "two-sided") -> float:
    """Units needed in arm A (unrounded) to detect p2 vs p1; arm B needs ratio times that."""
    if p1 == p2:
        return math.inf
    q1, q2 = 1 - p1, 1 - p2
    pbar = (p1 + ratio * p2) / (1 + ratio)
    za, zb = _z_alpha(alpha, alternative), float(stats.norm.ppf(power))
    num = za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / ratio)) + zb * math.sqrt(p1 * q1 + p2 * q2 / ratio)
    return num**2 / (p1 - p2) ** 2


def achieved_power(p1: float, p2: float, n_a: float, *, alpha: float = 0.05, ratio: float = 1.0,
                   alternative: str = "two-sided") -> float:
    """Power of the same approximation for n_a units in A and ratio * n_a in B (inverse of required_n)."""
    if p1 == p2:
        return float("nan")
    q1, q2 = 1 - p1, 1 - p2
    pbar = (p1 + ratio * p2) / (1 + ratio)
    za = _z_alpha(alpha, alternative)
    z = (abs(p2 - p1) * math.sqrt(n_a) - za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / ratio))) / math.sqrt(
        p1 * q1 + p2 * q2 / ratio
    )
    return float(stats.norm.cdf(z))


def sample_size(baseline: float, mde: float, *, relative: bool = False, alpha: float = 0.05, power: float = 0.8,
                ratio: float = 1.0, alternative: str = "two-sided") -> dict:
    """Units per arm to detect a change of `mde` (absolute, or relative to the baseline) in the CTR."""
    _check(baseline, alpha, power, ratio)
    if mde == 0 or not math.isfinite(mde):
        raise UsageError("--mde must be a non-zero effect size")
    delta = baseline * mde if relative else mde
    if alternative == "less":
        delta = -abs(delta)
    elif alternative == "greater":
        delta = abs(delta)
    p2 = baseline + delta
    if not (0.0 < p2 < 1.0):
        raise UsageError(f"baseline {baseline} plus the effect {delta:+g} gives a CTR of {p2:g}, outside (0, 1)")
    needed = required_n(baseline, p2, alpha=alpha, power=power, ratio=ratio, alternative=alternative)
    if not needed < MAX_UNITS:
        raise UsageError(f"an effect of {mde:g} is too small to detect: it needs more than {MAX_UNITS:.0e} units "
                         "per arm; give a larger --mde")
    n_a = math.ceil(needed - 1e-9)
    n_b = math.ceil(ratio * n_a - 1e-9)
    return _result(baseline, delta, n_a, n_b, alpha, power, ratio, alternative, solved_for="n",
                   relative_mde=math.copysign(mde, delta) if relative else None)


def minimum_detectable_effect(baseline: float, n_a: int, *, alpha: float = 0.05, power: float = 0.8,
                              ratio: float = 1.0, alternative: str = "two-sided") -> dict:
    """Smallest change of the CTR that n_a units in A (and ratio * n_a in B) detect with the power."""
    _check(baseline, alpha, power, ratio)
    if n_a < 2:
        raise UsageError(f"--users must be at least 2, got {n_a}")
    sign = -1.0 if alternative == "less" else 1.0
    room = (baseline if sign < 0 else 1 - baseline) - 1e-12

    def gap(d: float) -> float:
        return required_n(baseline, baseline + sign * d, alpha=alpha, power=power, ratio=ratio,
                          alternative=alternative) - n_a

    if gap(room) > 0:
        raise UsageError(f"{n_a} users per arm cannot detect any change of a {baseline} CTR with power {power}")
    delta = brentq(gap, 1e-12, room, xtol=1e-12, rtol=1e-12)
    n_b = math.ceil(ratio * n_a - 1e-9)
    return _result(baseline, sign * delta, int(n_a), n_b, alpha, power, ratio, alternative, solved_for="mde")


def _result(p1: float, delta: float, n_a: int, n_b: int, alpha: float, power: float, ratio: float,
            alternative: str, solved_for: str, relative_mde: float | None = None) -> dict:
    """The plan as full floats (README: machine formats carry the exact value; only the table rounds).

    The effect is the one given or solved for, not recomputed as target - baseline (0.11 - 0.1 is
    0.009999999999999995, which is why it used to be rounded to 12 decimals, and the solved MDE with it).
    """
    p2 = p1 + delta
    return {
        "solved_for": solved_for,
        "baseline_ctr": p1,
        "target_ctr": p2,
        "mde": delta,
        "mde_relative": delta / p1 if relative_mde is None else relative_mde,
        "n_per_arm": n_a,
        "n_a": n_a,
        "n_b": n_b,
        "n_total": n_a + n_b,
        "alpha": alpha,
        "power": power,
        "achieved_power": achieved_power(p1, p2, n_a, alpha=alpha, ratio=ratio, alternative=alternative),
        "ratio": ratio,
        "alternative": alternative,
        "formula": "Fleiss two-proportion normal approximation, no continuity correction",
    }


def design_effect(impressions_per_user: int, icc: float) -> float:
    """Variance inflation of clustered impressions: 1 + (K - 1) * ICC (K impressions per user)."""
    if impressions_per_user < 1:
        raise UsageError(f"--impressions-per-user must be at least 1, got {impressions_per_user}")
    if not (0.0 <= icc <= 1.0):
        raise UsageError(f"--icc must be in [0, 1], got {icc}")
    return 1.0 + (impressions_per_user - 1) * icc


def plan(baseline: float, *, mde: float | None = None, users: int | None = None, relative: bool = False,
         alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0, alternative: str = "two-sided",
         impressions_per_user: int | None = None, icc: float = 0.0) -> dict:
    """Sample size (given mde) or minimum detectable effect (given users per arm).

    Without impressions_per_user each user is one Bernoulli unit (n_per_arm counts users). With K
    impressions per user, n_per_arm counts impressions, inflated by the design effect for clicks
    correlated within a user, and users_per_arm = ceil(n_per_arm / K).
    """
    if (mde is None) == (users is None):
        raise UsageError("give exactly one of --mde (to get the sample size) or --users (to get the detectable effect)")
    if alternative not in ("two-sided", "greater", "less"):
        raise UsageError(f"unknown --alternative {alternative!r}; choose two-sided, greater or less")
    if mde is not None and (alternative, mde > 0) in (("greater", False), ("less", True)):  # it was flipped silently
        raise UsageError(f"--mde {mde:g} is a {'fall' if mde < 0 else 'rise'} of the CTR but --alternative "
                         f"{alternative} tests for a {'rise' if alternative == 'greater' else 'fall'}; give "
                         f"--mde {-mde:g}, or --alternative {'less' if alternative == 'greater' else 'greater'}")
    if icc and impressions_per_user is None:
        raise UsageError("--icc is the correlation of one user's impressions: it needs --impressions-per-user K")
    if relative and mde is None:
        raise UsageError("--relative says how to read --mde; with --users the effect is solved for (absolute and "
                         "relative are both in the answer)")
    k = impressions_per_user
    deff = design_effect(k, icc) if k is not None else 1.0
    if mde is not None:
        out = sample_size(baseline, mde, relative=relative, alpha=alpha, power=power, ratio=ratio,
                          alternative=alternative)
        if k is not None:
            n_a = math.ceil(out["n_a"] * deff - 1e-9)
            n_b = math.ceil(ratio * n_a - 1e-9)
            out.update(n_per_arm=n_a, n_a=n_a, n_b=n_b, n_total=n_a + n_b)
    else:
        if users < 2:
            raise UsageError(f"--users must be at least 2, got {users}")
        if users > MAX_UNITS:
            raise UsageError(f"--users must be at most {MAX_UNITS:.0e}, got {users}")
        n_eff = users * k / deff if k is not None else users
        out = minimum_detectable_effect(baseline, max(2, int(n_eff)), alpha=alpha, power=power, ratio=ratio,
                                        alternative=alternative)
        if k is not None:
            n_a = users * k
            n_b = math.ceil(ratio * n_a - 1e-9)
            out.update(n_per_arm=n_a, n_a=n_a, n_b=n_b, n_total=n_a + n_b)
    out["unit"] = "impression" if k is not None else "user"
    if k is not None:
        out.update(impressions_per_user=k, icc=icc, design_effect=deff,
                   users_per_arm=users if users is not None else math.ceil(out["n_a"] / k - 1e-9))
    else:
        out["users_per_arm"] = out["n_a"]
    return out
