"""Statistical core of `recsys abtest`: tests against scipy, sample size by hand, assignment, Holm, SRM."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from scipy import stats

from recsys_cli.abtest.assignment import DEFAULT_SALT, assign_arms, hash_fraction, sample_users
from recsys_cli.abtest.power import achieved_power, minimum_detectable_effect, plan, required_n, sample_size
from recsys_cli.abtest.statistics import (
    bootstrap_lift,
    compare_arms,
    decide,
    holm,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
)
from recsys_cli.errors import UsageError

# ----- two-proportion z-test ---------------------------------------------------------------------


def test_ztest_statistic_by_hand():
    res = two_proportion_ztest(120, 1000, 150, 1000)
    pooled = 270 / 2000
    z = (0.15 - 0.12) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert res.statistic == pytest.approx(z, abs=1e-12)
    assert res.statistic == pytest.approx(1.9630, abs=1e-4)
    assert res.diff == pytest.approx(0.03, abs=1e-12)
    se = math.sqrt(0.12 * 0.88 / 1000 + 0.15 * 0.85 / 1000)
    assert res.ci_low == pytest.approx(0.03 - stats.norm.ppf(0.975) * se, abs=1e-12)
    assert res.ci_high == pytest.approx(0.03 + stats.norm.ppf(0.975) * se, abs=1e-12)
    assert res.rel_lift == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize("counts", [(120, 1000, 150, 1000), (30, 400, 18, 350), (5, 80, 9, 95)])
def test_ztest_two_sided_equals_scipy_chi_square(counts):
    # The pooled two-sided z-test is the uncorrected chi-square test of the 2x2 table (z^2 = chi2).
    ca, na, cb, nb = counts
    res = two_proportion_ztest(ca, na, cb, nb)
    chi2, p, _, _ = stats.chi2_contingency([[ca, na - ca], [cb, nb - cb]], correction=False)
    assert res.p_value == pytest.approx(p, abs=1e-9)
    assert res.statistic**2 == pytest.approx(chi2, abs=1e-9)


def test_ztest_one_sided_p_values():
    z = two_proportion_ztest(120, 1000, 150, 1000).statistic
    greater = two_proportion_ztest(120, 1000, 150, 1000, alternative="greater")
    less = two_proportion_ztest(120, 1000, 150, 1000, alternative="less")
    assert greater.p_value == pytest.approx(stats.norm.sf(z), abs=1e-12)
    assert less.p_value == pytest.approx(stats.norm.cdf(z), abs=1e-12)
    assert greater.ci_high == math.inf and math.isfinite(greater.ci_low)
    assert less.ci_low == -math.inf


def test_ztest_degenerate_arms():
    res = two_proportion_ztest(0, 100, 0, 100)
    assert res.statistic == 0 and res.p_value == 1.0


# ----- Welch ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_equals_scipy(alternative):
    rng = np.random.default_rng(3)
    a = rng.beta(2, 15, size=137)
    b = rng.beta(2.4, 14, size=211)
    mine = welch_ttest(a, b, alternative=alternative, alpha=0.05)
    ref = stats.ttest_ind(b, a, equal_var=False, alternative=alternative)
    assert mine.statistic == pytest.approx(ref.statistic, abs=1e-9)
    assert mine.p_value == pytest.approx(ref.pvalue, abs=1e-9)
    assert mine.df == pytest.approx(ref.df, abs=1e-9)
    ci = ref.confidence_interval(0.95)
    assert mine.ci_low == pytest.approx(ci.low, abs=1e-9) if math.isfinite(ci.low) else mine.ci_low == -math.inf
    assert mine.ci_high == pytest.approx(ci.high, abs=1e-9) if math.isfinite(ci.high) else mine.ci_high == math.inf
    assert mine.diff == pytest.approx(b.mean() - a.mean(), abs=1e-12)


def test_welch_fixed_small_input():
    mine = welch_ttest([1.0, 2.0, 3.0], [2.0, 3.0, 5.0])
    assert mine.statistic == pytest.approx((10 / 3 - 2) / math.sqrt(1 / 3 + 7 / 9), abs=1e-12)
    assert mine.df == pytest.approx(3.4482758620689653, abs=1e-12)
    # scipy reports A - B; ours is B - A, so the interval is mirrored.
    assert mine.ci_low == pytest.approx(-1.7875506185622618, abs=1e-9)
    assert mine.ci_high == pytest.approx(4.454217285228928, abs=1e-9)


def test_welch_constant_data_is_undefined_not_significant():
    res = welch_ttest(np.zeros(10), np.zeros(12))
    assert math.isnan(res.p_value)
    assert decide(res, 0.05, "two-sided")["winner"] is None


# ----- decisions, bootstrap, SRM, Holm ----------------------------------------------------------


def test_decide_respects_alternative():
    res = welch_ttest(np.r_[np.zeros(50), np.ones(5)], np.r_[np.zeros(50), np.ones(25)])
    assert decide(res, 0.05, "two-sided")["winner"] == "B"
    assert decide(res, 0.05, "two-sided")["confidence"] == 0.95
    assert decide(welch_ttest(np.r_[np.zeros(50), np.ones(25)], np.r_[np.zeros(50), np.ones(5)]), 0.05, "two-sided")[
        "winner"
    ] == "A"
    assert "no significant difference" in decide(welch_ttest([0, 1, 0, 1], [1, 0, 1, 0]), 0.05, "two-sided")["message"]


def test_bootstrap_close_to_welch_and_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.binomial(10, 0.10, 800) / 10, rng.binomial(10, 0.13, 800) / 10
    boot = bootstrap_lift(a, b, n_boot=2000, seed=5)
    again = bootstrap_lift(a, b, n_boot=2000, seed=5)
    np.testing.assert_array_equal(boot["samples"], again["samples"])
    welch = welch_ttest(a, b)
    assert boot["diff"] == pytest.approx(welch.diff)
    assert boot["ci_low"] == pytest.approx(welch.ci_low, abs=0.003)
    assert boot["ci_high"] == pytest.approx(welch.ci_high, abs=0.003)
    assert boot["prob_b_better"] > 0.99
    assert len(boot["samples"]) == 2000


def test_srm_matches_scipy_chisquare_and_flags_mismatch():
    ok = srm_check(5000, 5100, 0.5)
    ref = stats.chisquare([5000, 5100], [5050, 5050])
    assert ok["p_value"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert not ok["mismatch"]
    bad = srm_check(5000, 5400, 0.5)
    assert bad["mismatch"] and bad["p_value"] < 1e-3
    skew = srm_check(8000, 2000, 0.2)
    assert skew["chi2"] == pytest.approx(0.0) and not skew["mismatch"]


def test_holm_by_hand():
    adj = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adj[:4], [0.03, 0.06, 0.06, 0.02], atol=1e-12)
    assert np.isnan(adj[4])
    # Step-down keeps adjusted p-values monotone: 0.9 cannot fall below the 1.0 before it.
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]
    np.testing.assert_allclose(holm([0.001, 0.2, 0.04]), [0.003, 0.2, 0.08], atol=1e-12)


def test_compare_arms_shape_and_validation():
    out = compare_arms(np.array([1, 0, 2]), np.array([10, 10, 10]), np.array([3, 2, 4]), np.array([10, 10, 10]),
                       n_boot=100, seed=1)
    assert out["arms"]["A"]["clicks"] == 3 and out["arms"]["B"]["impressions"] == 30
    assert out["arms"]["B"]["ctr"] == pytest.approx(0.3)
    assert out["tests"]["user_welch_t"]["primary"] is True
    assert "bootstrap" in out
    with pytest.raises(UsageError, match="alpha"):
        compare_arms([1], [1], [1], [1], alpha=1.5)
    with pytest.raises(UsageError, match="alternative"):
        compare_arms([1], [1], [1], [1], alternative="bigger")


# ----- sample size ----------------------------------------------------------------------------


def test_sample_size_textbook_formula_by_hand():
    # n = (z_{1-a/2} sqrt(2 pbar qbar) + z_{1-b} sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2, p1=.10, p2=.11
    z_a, z_b = 1.959963984540054, 0.8416212335729143
    n = (z_a * math.sqrt(2 * 0.105 * 0.895) + z_b * math.sqrt(0.10 * 0.90 + 0.11 * 0.89)) ** 2 / 0.01**2
    assert required_n(0.10, 0.11) == pytest.approx(n, rel=1e-12)
    out = sample_size(0.10, 0.01)
    assert out["n_per_arm"] == math.ceil(n) == 14751
    assert out["n_total"] == 2 * 14751
    assert sample_size(0.10, 0.10, relative=True)["n_per_arm"] == 14751
    assert out["achieved_power"] == pytest.approx(0.8, abs=1e-4)


def test_sample_size_unequal_ratio_and_one_sided():
    z_a, z_b = stats.norm.ppf(0.95), stats.norm.ppf(0.9)
    p1, p2, r = 0.2, 0.23, 2.0
    pbar = (p1 + r * p2) / (1 + r)
    n = (z_a * math.sqrt(pbar * (1 - pbar) * (1 + 1 / r)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / r)) ** 2 / 0.03**2
    out = sample_size(p1, 0.03, power=0.9, ratio=r, alternative="greater")
    assert out["n_a"] == math.ceil(n)
    assert out["n_b"] == math.ceil(2 * math.ceil(n))


def test_mde_inverts_sample_size():
    out = minimum_detectable_effect(0.10, 14751)
    assert out["mde"] == pytest.approx(0.01, abs=2e-6)
    assert achieved_power(0.10, 0.10 + out["mde"], 14751) == pytest.approx(0.8, abs=1e-6)
    with pytest.raises(UsageError):
        sample_size(0.95, 0.1)  # 1.05 is not a CTR


def test_plan_impressions_with_design_effect():
    out = plan(0.10, mde=0.01, impressions_per_user=10, icc=0.1)
    assert out["unit"] == "impression"
    assert out["n_per_arm"] == math.ceil(14751 * 1.9)
    assert out["users_per_arm"] == math.ceil(math.ceil(14751 * 1.9) / 10)
    with pytest.raises(UsageError, match="exactly one"):
        plan(0.10, mde=0.01, users=100)


# ----- assignment -------------------------------------------------------------------------------


def test_hash_is_sha256_of_salt_and_id():
    expected = (int.from_bytes(hashlib.sha256(b"recsys-abtest:1").digest()[:8], "big") >> 11) / 2**53
    assert hash_fraction([1])[0] == expected
    # Pinned: the same on every machine and every release.
    assert assign_arms(np.arange(1, 21)).tolist() == [0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0, 0]
    assert DEFAULT_SALT == "recsys-abtest"


def test_assignment_stable_and_order_free():
    ids = np.arange(1, 5001)
    first = assign_arms(ids, "exp-1")
    assert np.array_equal(first, assign_arms(ids, "exp-1"))
    perm = np.random.default_rng(0).permutation(len(ids))
    assert np.array_equal(assign_arms(ids[perm], "exp-1"), first[perm])


def test_assignment_balance_salt_and_traffic():
    ids = np.arange(100_000)
    half = assign_arms(ids, "balance")
    assert abs(half.mean() - 0.5) < 0.01
    other = assign_arms(ids, "another-salt")
    assert 0.45 < (other != half).mean() < 0.55
    fifth = assign_arms(ids, "balance", traffic=0.2)
    assert abs(fifth.mean() - 0.2) < 0.01
    # Ramp-up: everyone in B at 20% stays in B at 50%.
    assert np.all(half[fifth == 1] == 1)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(UsageError, match="traffic"):
            assign_arms(ids[:10], traffic=bad)


def test_sample_users_seeded():
    ids = np.arange(100, 200)
    a = sample_users(ids, 30, seed=1)
    assert len(a) == 30 and len(set(a.tolist())) == 30 and set(a.tolist()) <= set(ids.tolist())
    assert np.array_equal(a, sample_users(ids[::-1], 30, seed=1))
    assert not np.array_equal(a, sample_users(ids, 30, seed=2))
    assert np.array_equal(sample_users(ids, None, seed=1), ids)


def test_bootstrap_resamples_users_within_arms_from_the_seed_and_takes_percentiles():
    rng = np.random.default_rng(2)
    a, b = rng.binomial(8, 0.2, 60) / 8, rng.binomial(8, 0.3, 45) / 8
    boot = bootstrap_lift(a, b, n_boot=500, seed=9, alpha=0.1)
    # By hand: per resample, arm A's users then arm B's, drawn with replacement from default_rng(seed).
    draw = np.random.default_rng(9)
    ia, ib = draw.integers(0, len(a), (500, len(a))), draw.integers(0, len(b), (500, len(b)))
    mean_a, mean_b = a[ia].mean(axis=1), b[ib].mean(axis=1)
    np.testing.assert_allclose(boot["samples"], mean_b - mean_a, rtol=0, atol=1e-12)
    assert boot["ci_low"] == pytest.approx(np.quantile(mean_b - mean_a, 0.05), abs=1e-12)
    assert boot["ci_high"] == pytest.approx(np.quantile(mean_b - mean_a, 0.95), abs=1e-12)
    assert boot["rel_ci_low"] == pytest.approx(np.quantile(mean_b / mean_a - 1, 0.05), abs=1e-12)
    assert boot["prob_b_better"] == pytest.approx(np.mean(mean_b > mean_a) + 0.5 * np.mean(mean_b == mean_a))
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: y.mean(axis=axis) - x.mean(axis=axis), n_resamples=500,
                          method="percentile", confidence_level=0.9, rng=np.random.default_rng(9))
    assert (boot["ci_low"], boot["ci_high"]) == pytest.approx(tuple(ref.confidence_interval), abs=1e-12)
    one_sided = bootstrap_lift(a, b, n_boot=500, seed=9, alpha=0.1, alternative="greater")
    assert one_sided["ci_low"] == pytest.approx(np.quantile(mean_b - mean_a, 0.1), abs=1e-12)
    assert one_sided["ci_high"] == math.inf and one_sided["rel_ci_high"] == math.inf


def test_bootstrap_needs_two_users_per_arm():
    with pytest.raises(UsageError, match="at least two users in each arm"):
        bootstrap_lift([0.1], [0.2, 0.3], n_boot=10, seed=0)


def test_welch_relative_lift_is_the_delta_method_by_hand():
    a, b = np.array([0.1, 0.2, 0.15, 0.05, 0.3]), np.array([0.2, 0.25, 0.3, 0.1, 0.35, 0.4])
    res = welch_ttest(a, b, alpha=0.05)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(vb / a.mean() ** 2 + b.mean() ** 2 * va / a.mean() ** 4)
    crit = stats.t(res.df).ppf(0.975)
    assert res.rel_lift == pytest.approx(b.mean() / a.mean() - 1, abs=1e-12)
    assert (res.rel_ci_low, res.rel_ci_high) == pytest.approx((res.rel_lift - crit * se, res.rel_lift + crit * se))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mde": -0.05, "alternative": "greater"}, "--mde -0.05 is a fall of the CTR but --alternative greater"),
    ({"mde": 0.05, "alternative": "less"}, "--mde 0.05 is a rise of the CTR but --alternative less"),
    ({"mde": 0.05, "icc": 0.5}, "--icc is the correlation of one user's impressions"),
    ({"users": 1000, "relative": True}, "--relative says how to read --mde"),
])
def test_plan_refuses_options_it_would_flip_or_ignore(kwargs, message):
    """They were answered anyway: the sign flipped to match the alternative, --icc and --relative dropped."""
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        plan(0.1, **kwargs)
    assert plan(0.1, mde=-0.05, alternative="less")["target_ctr"] == pytest.approx(0.05)


def test_a_click_threshold_above_the_scale_is_refused():
    from recsys_cli.abtest.simulation import make_click_model

    with pytest.raises(UsageError, match="--click-threshold 99 is above the ratings' scale"):
        make_click_model("threshold", (1.0, 5.0), threshold=99)
    assert make_click_model("threshold", (1.0, 5.0), threshold=1.0) is not None  # every held-out rating clicks
