"""Adaptive allocation between two or more arms: users arrive in rounds, a policy picks each one's arm.

Feedback is batched: the policy sees the clicks of earlier rounds only. The same arrivals and
the same uniforms drive the policy, a fixed equal split (round-robin over arrivals) and the
always-best-arm benchmark (common random numbers), so their clicks are directly comparable.
The best arm is the one with the highest true CTR: expected clicks over expected impressions
of the click model on every eligible user. Regret is counted in expected clicks against
always showing the best arm ("regret"), and in realised clicks with the same uniforms
("regret_realized").

Policies (CTR per impression as the reward):
- thompson: Beta(1 + clicks, 1 + impressions - clicks) per arm; each user gets the argmax of a draw.
- ucb: UCB1, index = CTR + sqrt(2 ln N / n) on impressions; within a round each assignment counts
  as a virtual play (the arm's mean impressions per user, no reward) so a batch spreads out.
- epsilon-greedy: a uniformly random arm with probability epsilon, else the best observed CTR.
"""

from __future__ import annotations

import math
import string

import numpy as np

from recsys_cli.abtest.simulation import ClickModel, Exposure
from recsys_cli.errors import UsageError

POLICIES = ("thompson", "ucb", "epsilon-greedy")


def arm_labels(n: int) -> list[str]:
    return [string.ascii_uppercase[i] if i < 26 else f"arm{i + 1}" for i in range(n)]


def _choose(policy: str, clicks: np.ndarray, imps: np.ndarray, batch: int, rng: np.random.Generator,
            epsilon: float, imps_per_user: np.ndarray) -> np.ndarray:
    n_arms = len(clicks)
    if policy == "thompson":
        draws = rng.beta(1.0 + clicks, 1.0 + imps - clicks, size=(batch, n_arms))
        return np.argmax(draws, axis=1)
    if policy == "epsilon-greedy":
        with np.errstate(divide="ignore", invalid="ignore"):
            ctr = np.where(imps > 0, clicks / np.maximum(imps, 1), np.inf)  # untried arms first
        best = np.flatnonzero(ctr == ctr.max())
        out = rng.choice(best, size=batch)
        explore = rng.random(batch) < epsilon
        out[explore] = rng.integers(0, n_arms, size=int(explore.sum()))
        return out
    # UCB1 with virtual plays inside the batch.
    v_imps = imps.astype(np.float64).copy()
    ctr = np.where(imps > 0, clicks / np.maximum(imps, 1), 0.0)
    out = np.empty(batch, np.int64)
    for j in range(batch):
        untried = np.flatnonzero(v_imps == 0)
        if len(untried):
            a = int(untried[0])
        else:
            bonus = np.sqrt(2.0 * math.log(max(v_imps.sum(), 2.0)) / v_imps)
            a = int(np.argmax(ctr + bonus))
        out[j] = a
        v_imps[a] += imps_per_user[a]
    return out


def _periods(rounds: int) -> list[np.ndarray]:
    """Per round for up to 20 rounds, else ten deciles of rounds."""
    idx = np.arange(rounds)
    return [idx[i : i + 1] for i in idx] if rounds <= 20 else [p for p in np.array_split(idx, 10) if len(p)]


def run_bandit(exposures: list[Exposure], click_model: ClickModel, *, policy: str = "thompson", rounds: int = 50,
               batch: int = 100, seed: int = 42, epsilon: float = 0.1, progress=None) -> dict:
    """Simulate the policy and a fixed equal split over the same arrivals; shares, clicks, regret.

    progress: a reporter advanced once per round (rounds done / total, with the ETA on a terminal)."""
    if policy not in POLICIES:
        raise UsageError(f"unknown --policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if len(exposures) < 2:
        raise UsageError("a bandit needs at least two runs")
    if rounds < 1 or batch < 1:
        raise UsageError(f"--rounds and --batch must be at least 1, got {rounds} and {batch}")
    from recsys_cli.runtime import check_memory

    check_memory(32 * rounds * (len(exposures) + 2) + 64 * batch * (len(exposures) + 16),
                 f"a bandit of {rounds:,} rounds x {batch:,} users")
    if not (0.0 <= epsilon <= 1.0):
        raise UsageError(f"--epsilon must be in [0, 1], got {epsilon}")
    n_arms, n_pool = len(exposures), exposures[0].ratings.shape[0]
    if n_pool == 0:
        raise UsageError("no eligible users to simulate")
    labels = arm_labels(n_arms)
    exp_clicks = np.stack([click_model.expected(e).sum(axis=1) for e in exposures])  # (arms, users)
    pool_imps = np.stack([e.impressions for e in exposures]).astype(np.float64)
    true_ctr = exp_clicks.sum(axis=1) / np.maximum(pool_imps.sum(axis=1), 1)
    best = int(np.argmax(true_ctr))
    imps_per_user = np.maximum(pool_imps.mean(axis=1), 1.0)

    env = np.random.default_rng(np.random.SeedSequence([int(seed), 11]))
    pol_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 12]))
    k = exposures[0].ratings.shape[1]
    clicks, imps = np.zeros(n_arms), np.zeros(n_arms)
    served = np.zeros((rounds, n_arms), np.int64)
    eq = {"clicks": 0, "impressions": 0, "regret": 0.0, "regret_realized": 0.0}
    regret = regret_real = 0.0
    arrivals = 0
    if progress is not None:
        progress.start(rounds, f"bandit {policy}")
    for t in range(rounds):
        if progress is not None and t:
            progress.advance(1)
        users = env.choice(n_pool, size=batch, replace=batch > n_pool)
        uniforms = env.random((batch, k))
        chosen = _choose(policy, clicks, imps, batch, pol_rng, epsilon, imps_per_user)
        equal = (arrivals + np.arange(batch)) % n_arms
        arrivals += batch
        outcome = np.empty((n_arms, batch))  # realised clicks of each arm for each arriving user
        for a in range(n_arms):
            outcome[a] = click_model.sample(exposures[a].take(users), uniforms).sum(axis=1)
        got = outcome[chosen, np.arange(batch)]
        got_eq = outcome[equal, np.arange(batch)]
        shown = pool_imps[chosen, users]
        np.add.at(clicks, chosen, got)
        np.add.at(imps, chosen, shown)
        served[t] = np.bincount(chosen, minlength=n_arms)
        regret += float((exp_clicks[best, users] - exp_clicks[chosen, users]).sum())
        regret_real += float((outcome[best] - got).sum())
        eq["clicks"] += int(got_eq.sum())
        eq["impressions"] += int(pool_imps[equal, users].sum())
        eq["regret"] += float((exp_clicks[best, users] - exp_clicks[equal, users]).sum())
        eq["regret_realized"] += float((outcome[best] - got_eq).sum())

    total_users = rounds * batch
    allocation = []
    for period in _periods(rounds):
        counts = served[period].sum(axis=0)
        lo, hi = int(period[0]) + 1, int(period[-1]) + 1
        row = {"period": f"round {lo}" if lo == hi else f"rounds {lo}-{hi}", "first_round": lo, "last_round": hi}
        row.update({lab: float(c / counts.sum()) for lab, c in zip(labels, counts, strict=True)})
        allocation.append(row)
    served_total = served.sum(axis=0)
    arms = [
        {"arm": labels[a], "true_ctr": float(true_ctr[a]), "users_served": int(served_total[a]),
         "share": float(served_total[a] / total_users), "clicks": int(clicks[a]), "impressions": int(imps[a]),
         "observed_ctr": float(clicks[a] / imps[a]) if imps[a] else math.nan, "best": a == best}
        for a in range(n_arms)
    ]
    pol_clicks, pol_imps = int(clicks.sum()), int(imps.sum())
    return {
        "arms": arms,
        "best_arm": labels[best],
        "policy": {"name": policy, "users": total_users, "clicks": pol_clicks, "impressions": pol_imps,
                   "ctr": pol_clicks / pol_imps if pol_imps else math.nan, "regret": regret,
                   "regret_realized": regret_real, "best_arm_share": float(served_total[best] / total_users)},
        "equal_split": {"users": total_users, **eq,
                        "ctr": eq["clicks"] / eq["impressions"] if eq["impressions"] else math.nan,
                        "best_arm_share": float(np.sum((np.arange(total_users) % n_arms) == best) / total_users)},
        "clicks_gained_vs_equal_split": pol_clicks - eq["clicks"],
        "allocation": allocation,
        "regret_note": "regret = expected clicks lost against always showing the best arm (best = highest true CTR "
                       "on all eligible users); regret_realized uses the same simulated clicks",
    }
