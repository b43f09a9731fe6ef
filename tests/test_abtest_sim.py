"""Click models, A/A false-positive rate, power at the planned size, bandits, segments."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.abtest.assignment import assign_arms
from recsys_cli.abtest.bandit import run_bandit
from recsys_cli.abtest.power import sample_size
from recsys_cli.abtest.segments import activity_labels, age_band, segment_table
from recsys_cli.abtest.simulation import (
    CascadeClick,
    Exposure,
    HeldOut,
    PositionClick,
    ThresholdClick,
    make_click_model,
    mix,
    simulate_clicks,
)
from recsys_cli.abtest.statistics import compare_arms
from recsys_cli.errors import UsageError


def _exposure(n_users: int, k: int, rated_share: float, seed: int) -> Exposure:
    """Random held-out ratings 1..5 on a share of the shown positions, NaN elsewhere."""
    rng = np.random.default_rng(seed)
    ratings = rng.integers(1, 6, size=(n_users, k)).astype(np.float32)
    ratings[rng.random((n_users, k)) >= rated_share] = np.nan
    return Exposure(ratings, np.ones((n_users, k), bool))


# ----- click models -------------------------------------------------------------------------------


def test_threshold_model_is_exact():
    exp = Exposure(np.array([[5, np.nan, 3, 4]], np.float32), np.array([[True, True, True, False]]))
    clicks = ThresholdClick(4).sample(exp, np.zeros((1, 4)))
    assert clicks.tolist() == [[True, False, False, False]]
    assert make_click_model("threshold").params() == {"threshold": 4.0}


def test_position_model_probabilities_by_hand():
    exp = Exposure(np.array([[5, 3, np.nan, 1]], np.float32), np.ones((1, 4), bool))
    power = PositionClick((1, 5), eta=1.0, noise=0.02).expected(exp)[0]
    # rank 1, rating 5: attractiveness 1; rank 2, rating 3: 0.02 + 0.98 * 3/15, examined with 1/2.
    np.testing.assert_allclose(power, [1.0, (0.02 + 0.98 * 3 / 15) / 2, 0.02 / 3, 0.02 / 4], atol=1e-12)
    geo = PositionClick((1, 5), decay="geometric", gamma=0.5, noise=0.0).expected(exp)[0]
    np.testing.assert_allclose(geo, [1.0, 0.5 * 3 / 15, 0.0, 0.0], atol=1e-12)
    with pytest.raises(UsageError, match="decay"):
        PositionClick(decay="linear")


@pytest.mark.parametrize("model", [PositionClick((1, 5), eta=0.7), CascadeClick((1, 5), noise=0.05)])
def test_sampled_clicks_match_expected(model):
    exp = Exposure(np.tile(np.array([[5, 4, np.nan, 2, 5]], np.float32), (40_000, 1)), np.ones((40_000, 5), bool))
    clicks = simulate_clicks(model, exp, np.random.default_rng(0))
    np.testing.assert_allclose(clicks.mean(axis=0), model.expected(exp)[0], atol=0.01)
    if isinstance(model, CascadeClick):
        assert clicks.sum(axis=1).max() == 1  # stops after the first click
        # P(click at 2) = (1 - a1) * a2
        a = model.attractiveness(exp)[0]
        assert model.expected(exp)[0, 1] == pytest.approx((1 - a[0]) * a[1])


def test_empty_positions_never_click():
    exp = Exposure(np.full((100, 3), 5, np.float32), np.zeros((100, 3), bool))
    for name in ("threshold", "position", "cascade"):
        model = make_click_model(name)
        assert not simulate_clicks(model, exp, np.random.default_rng(1)).any()
        assert exp.impressions.sum() == 0


def test_heldout_lookup_and_mix():
    held = HeldOut(np.array([0, 0, 2]), np.array([1, 3, 0]), np.array([4.0, 2.0, 5.0]), n_items=5)
    got = held.lookup(np.array([0, 2]), np.array([[3, 1, -1], [0, 1, 2]]))
    np.testing.assert_array_equal(np.isnan(got), [[False, False, True], [False, True, True]])
    assert got[0, 0] == 2.0 and got[0, 1] == 4.0 and got[1, 0] == 5.0
    a, b = _exposure(4, 2, 1.0, 0), _exposure(4, 2, 1.0, 1)
    both = mix(a, b, np.array([0, 1, 0, 1]))
    np.testing.assert_array_equal(both.ratings[1], b.ratings[1])
    np.testing.assert_array_equal(both.ratings[2], a.ratings[2])


# ----- A/A and power ------------------------------------------------------------------------------


def test_aa_false_positive_rate():
    """The same exposure on both arms: the seed changes the salt (assignment) and the clicks."""
    users = np.arange(1, 801)
    exp = _exposure(len(users), 10, 0.3, seed=99)
    model = PositionClick((1, 5), eta=1.0, noise=0.02)
    positives = 0
    for seed in range(200):
        arm = assign_arms(users, f"aa-{seed}")
        clicks = simulate_clicks(model, exp, np.random.default_rng(seed)).sum(axis=1)
        imps = exp.impressions
        out = compare_arms(clicks[arm == 0], imps[arm == 0], clicks[arm == 1], imps[arm == 1], alpha=0.05)
        positives += out["winner"]["significant"]
    assert 0.02 <= positives / 200 <= 0.09


def test_power_at_planned_sample_size():
    planned = sample_size(0.20, 0.05, alpha=0.05, power=0.8)
    n = planned["n_per_arm"]
    rng = np.random.default_rng(11)
    ones = np.ones(n, np.int64)
    detected = 0
    sims = 300
    for _ in range(sims):
        a = rng.random(n) < 0.20
        b = rng.random(n) < 0.25
        detected += compare_arms(a.astype(np.int64), ones, b.astype(np.int64), ones)["winner"]["winner"] == "B"
    assert abs(detected / sims - 0.8) <= 0.1


# ----- bandits ----------------------------------------------------------------------------------


def _two_arms(n_users: int = 400, k: int = 10):
    worse = _exposure(n_users, k, 0.15, seed=1)
    better = _exposure(n_users, k, 0.15, seed=2)
    better.ratings[:, :3] = 5.0  # planted: three sure clicks per user under the threshold model
    return [worse, better]


def test_thompson_prefers_the_better_arm():
    arms = _two_arms()
    out = run_bandit(arms, ThresholdClick(4), policy="thompson", rounds=30, batch=40, seed=3)
    assert out["best_arm"] == "B"
    assert out["arms"][1]["true_ctr"] > out["arms"][0]["true_ctr"] + 0.2
    assert out["policy"]["best_arm_share"] > 0.85
    assert out["allocation"][-1]["B"] > 0.95
    assert out["policy"]["regret"] < 0.3 * out["equal_split"]["regret"]
    assert out["policy"]["clicks"] > out["equal_split"]["clicks"]
    assert out["equal_split"]["best_arm_share"] == 0.5
    assert len(out["allocation"]) == 10 and out["allocation"][0]["period"] == "rounds 1-3"
    again = run_bandit(arms, ThresholdClick(4), policy="thompson", rounds=30, batch=40, seed=3)
    assert again == out


@pytest.mark.parametrize("policy", ["ucb", "epsilon-greedy"])
def test_other_policies_beat_equal_split(policy):
    out = run_bandit(_two_arms(), PositionClick((1, 5)), policy=policy, rounds=15, batch=40, seed=4)
    assert out["best_arm"] == "B"
    assert out["policy"]["best_arm_share"] > 0.6
    assert out["policy"]["regret"] < out["equal_split"]["regret"]
    assert len(out["allocation"]) == 15
    for row in out["allocation"]:
        assert row["A"] + row["B"] == pytest.approx(1.0)


def test_bandit_validation():
    with pytest.raises(UsageError, match="policy"):
        run_bandit(_two_arms(10, 2), ThresholdClick(), policy="greedy")
    with pytest.raises(UsageError, match="two"):
        run_bandit(_two_arms(10, 2)[:1], ThresholdClick())


# ----- segments ---------------------------------------------------------------------------------


def test_age_bands_cover_both_releases():
    assert [age_band(a) for a in (1, 17, 18, 24, 25, 33, 45, 50, 56, 73)] == [
        "<18", "<18", "18-24", "18-24", "25-34", "25-34", "45-49", "50-55", "56+", "56+"]


def test_activity_tertiles_and_holm_in_segment_table():
    counts = np.arange(1, 91)
    labels = activity_labels(counts)
    assert labels[0] == "low (1-30 ratings)" and labels[45] == "mid (31-60 ratings)" and labels[-1] == "high (61-90 ratings)"
    rng = np.random.default_rng(0)
    arm = np.tile([0, 1], 45)
    clicks = np.where(arm == 1, rng.binomial(10, 0.5, 90), rng.binomial(10, 0.1, 90))
    rows = segment_table({"activity": labels}, arm, clicks, np.full(90, 10), alpha=0.05, alternative="two-sided")
    assert [r["value"] for r in rows] == ["low (1-30 ratings)", "mid (31-60 ratings)", "high (61-90 ratings)"]
    ps = sorted(r["p_value"] for r in rows)
    assert min(r["p_holm"] for r in rows) == pytest.approx(3 * ps[0])
    assert all(r["significant"] for r in rows)
    assert sum(r["users_a"] + r["users_b"] for r in rows) == 90
