"""Metrics: hand-computed cases, Surprise parity, textbook nDCG, every kernel against its twin."""

from __future__ import annotations

from math import log2, sqrt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from surprise import accuracy
from surprise.prediction_algorithms.predictions import Prediction

from recsys_cli.errors import DataError
from recsys_cli.evaluation.auc import (
    auc_from_pairs,
    auc_from_pairs_ref,
    auc_from_scores,
    auc_per_user,
    auc_per_user_ref,
    auc_sampled,
    sample_negatives,
    sample_negatives_ref,
)
from recsys_cli.evaluation.metrics import (
    fcp,
    fcp_counts,
    fcp_counts_ref,
    mae,
    mean_std,
    rmse,
)
from recsys_cli.evaluation.ranking_metrics import (
    intra_list_diversity,
    intra_list_diversity_ref,
    ranking_metrics,
    ranking_per_user,
    ranking_per_user_ref,
)
from recsys_cli.evaluation.user_lists import canonical_csr


def csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return indptr, indices


def random_case(rng: np.random.Generator, n_users: int, n_items: int, k_max: int):
    """Random top-K lists (distinct items, some -1 padding) and relevant sets (some empty)."""
    recs = np.full((n_users, k_max), -1, dtype=np.int32)
    rel = []
    for u in range(n_users):
        n_rec = rng.integers(0, k_max + 1)
        recs[u, :n_rec] = rng.choice(n_items, size=n_rec, replace=False)
        rel.append(sorted(rng.choice(n_items, size=rng.integers(0, 8), replace=False).tolist()))
    return recs, *csr(rel)


# ------------------------------------------------------------------ rating metrics
def test_rmse_mae_fcp_match_surprise() -> None:
    rng = np.random.default_rng(0)
    n = 400
    users = rng.integers(0, 40, size=n)
    true = rng.integers(1, 6, size=n).astype(float)
    pred = np.clip(true + rng.normal(0, 1, size=n), 1, 5)
    pred[::7] = np.round(pred[::7])  # equal estimates: Surprise counts them discordant
    preds = [
        Prediction(int(u), i, t, p, {}) for i, (u, t, p) in enumerate(zip(users, true, pred, strict=True))
    ]
    assert rmse(pred, true) == pytest.approx(accuracy.rmse(preds, verbose=False), rel=1e-12)
    assert mae(pred, true) == pytest.approx(accuracy.mae(preds, verbose=False), rel=1e-12)
    assert fcp(users, pred, true) == pytest.approx(accuracy.fcp(preds, verbose=False), rel=1e-12)


def test_rmse_mae_by_hand() -> None:
    # errors 1, -2, 0 -> squared 1, 4, 0 (mean 5/3); absolute 1, 2, 0 (mean 1)
    assert rmse([2.0, 1.0, 4.0], [3.0, 3.0, 4.0]) == pytest.approx(sqrt(5 / 3))
    assert mae([2.0, 1.0, 4.0], [3.0, 3.0, 4.0]) == pytest.approx(1.0)
    with pytest.raises(DataError):
        rmse([], [])
    with pytest.raises(DataError):
        mae([1.0], [1.0, 2.0])


def test_fcp_averages_like_surprise_not_pooled() -> None:
    # user a: 3 concordant pairs; b: 1 discordant (reversed); c: 1 concordant.
    # Surprise: mean nc over users with nc > 0 = (3 + 1) / 2 = 2, mean nd over b = 1 -> 2/3
    # (the pooled ratio would be 4/5).
    users = ["a", "a", "a", "b", "b", "c", "c"]
    true = [1, 2, 3, 1, 2, 1, 2]
    pred = [1.0, 2.0, 3.0, 2.0, 1.0, 3.5, 4.0]
    assert fcp(users, pred, true) == pytest.approx(2 / 3)
    preds = [Prediction(u, i, t, p, None) for i, (u, t, p) in enumerate(zip(users, true, pred, strict=True))]
    assert accuracy.fcp(preds, verbose=False) == pytest.approx(2 / 3)
    with pytest.raises(DataError, match="FCP"):
        fcp([1, 2], [3.0, 4.0], [3.0, 4.0])  # one prediction per user: no pairs


def test_fcp_counts_matches_ref() -> None:
    rng = np.random.default_rng(1)
    starts = np.cumsum([0, *rng.integers(0, 9, size=30)]).astype(np.int64)
    pred = rng.integers(0, 4, size=starts[-1]).astype(float)  # many ties
    true = rng.integers(1, 6, size=starts[-1]).astype(float)
    for got, want in zip(fcp_counts(starts, pred, true), fcp_counts_ref(starts, pred, true), strict=True):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------- ranking, by hand
RECS = np.array([[0, 1, 2], [3, -1, -1], [5, 0, 1], [2, 4, 5]], dtype=np.int32)
REL = [[1, 4], [3], [], [5, 4, 2, 0]]  # user 2 has nothing held out: skipped
D2, D3, D4 = 1 / log2(3), 1 / log2(4), 1 / log2(5)  # discounts of ranks 2, 3, 4


def test_ranking_metrics_by_hand() -> None:
    # per user at k=2 (u0 hit at rank 2; u1 hit at rank 1, list padded; u3 hits at 1, 2):
    #   precision 1/2, 1/2, 1   recall 1/2, 1, 2/4   ndcg D2/(1+D2), 1, 1
    #   AP 1/2, 1, 2 -> map /|rel| 1/4, 1, 2/4 ; map_capped /min(|rel|,2) 1/4, 1, 1
    # at k=4 > K_max=3 (precision still divides by 4; u3 hits at 1, 2, 3):
    #   precision 1/4, 1/4, 3/4  recall 1/2, 1, 3/4  ndcg u3 = (1+D2+D3)/(1+D2+D3+D4)
    #   AP u3 = 3 -> map 3/4, map_capped 3/min(4,4)
    got = ranking_metrics(RECS, *csr(REL), ks=(4, 2), n_items=6)
    want = {
        "precision@2": (1 / 2 + 1 / 2 + 1) / 3,
        "recall@2": (1 / 2 + 1 + 1 / 2) / 3,
        "ndcg@2": (D2 / (1 + D2) + 1 + 1) / 3,
        "map@2": (1 / 4 + 1 + 1 / 2) / 3,
        "map_capped@2": (1 / 4 + 1 + 1) / 3,
        "mrr@2": (1 / 2 + 1 + 1) / 3,
        "hit_rate@2": 1.0,
        "coverage@2": 5 / 6,  # items 0..4; item 5 appears only in skipped user 2's top 2
        "precision@4": (1 / 4 + 1 / 4 + 3 / 4) / 3,
        "recall@4": (1 / 2 + 1 + 3 / 4) / 3,
        "ndcg@4": (D2 / (1 + D2) + 1 + (1 + D2 + D3) / (1 + D2 + D3 + D4)) / 3,
        "map@4": (1 / 4 + 1 + 3 / 4) / 3,
        "map_capped@4": (1 / 4 + 1 + 3 / 4) / 3,
        "mrr@4": (1 / 2 + 1 + 1) / 3,
        "hit_rate@4": 1.0,
        "coverage@4": 1.0,
        "users_evaluated": 3,
        "users_skipped": 1,
    }
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_beyond_accuracy_by_hand() -> None:
    counts = np.array([4, 2, 1, 0, 2, 1])  # of 4 training users -> p = 1, .5, .25, 0, .5, .25
    genres = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1]])
    got = ranking_metrics(
        RECS, *csr(REL), ks=(2, 4), n_items=6, train_counts=counts, n_train_users=4, item_genres=genres
    )
    # k=2 slots of evaluated users: 0, 1 | 3 | 2, 4. Self-information 0, 1 | 2 (unseen item 3
    # counts as one user: -log2(1/4)) | 2, 1 -> mean 6/5. ARP per user .75, 0, .375.
    assert got["novelty@2"] == pytest.approx(6 / 5)
    assert got["popularity_bias@2"] == pytest.approx((0.75 + 0 + 0.375) / 3)
    # pair (0,1): cos 1/sqrt2; pair (2,4): item 4 has no genre -> distance 1; u1 has one item
    assert got["diversity@2"] == pytest.approx(((1 - 1 / sqrt(2)) + 1) / 2)
    # k=4: u0 {0,1,2} and u3 {2,4,5} each have one pair at cos 1/sqrt2 and two at distance 1
    assert got["diversity@4"] == pytest.approx((1 - 1 / sqrt(2) + 2) / 3)
    same = ranking_metrics(RECS, *csr(REL), ks=(2,), n_items=6, item_popularity=counts / 4, n_train_users=4)
    assert same["novelty@2"] == pytest.approx(6 / 5)
    assert "diversity@2" not in same


def test_map_capped_differs_when_more_relevant_than_k() -> None:
    # 5 relevant, hits at ranks 1 and 3 of a 3-list: AP = 1/1 + 2/3 = 5/3
    got = ranking_metrics(np.array([[0, 9, 1]]), *csr([[0, 1, 2, 3, 4]]), ks=(3,), n_items=10)
    assert got["map@3"] == pytest.approx((5 / 3) / 5)
    assert got["map_capped@3"] == pytest.approx((5 / 3) / 3)
    assert got["recall@3"] == pytest.approx(2 / 5)


def test_graded_gains_and_unsorted_rel_rows() -> None:
    # rel row given unsorted with gains 1 (item 7), 3 (item 2); list [2, 5, 7]:
    # DCG = 3 + 1*D3, IDCG = 3 + 1*D2
    got = ranking_metrics(
        np.array([[2, 5, 7]]),
        np.array([0, 2]),
        np.array([7, 2]),
        ks=(3,),
        n_items=8,
        rel_gains=np.array([1.0, 3.0]),
    )
    assert got["ndcg@3"] == pytest.approx((3 + D3) / (3 + D2))


def test_ranking_input_errors() -> None:
    indptr, indices = csr([[1]])
    with pytest.raises(DataError, match="twice"):
        ranking_metrics(np.array([[1, 1]]), indptr, indices, n_items=3)
    with pytest.raises(DataError, match="outside"):
        ranking_metrics(np.array([[1, 3]]), indptr, indices, n_items=3)
    with pytest.raises(DataError, match="users"):
        ranking_metrics(np.array([[1], [2]]), indptr, indices, n_items=3)
    with pytest.raises(DataError, match="twice"):
        canonical_csr(np.array([0, 3]), np.array([2, 0, 2]), 3)
    with pytest.raises(DataError, match="no evaluated user"):
        ranking_metrics(np.array([[1]]), *csr([[]]), n_items=3)
    with pytest.raises(DataError, match="n_train_users"):
        ranking_metrics(np.array([[1]]), indptr, indices, n_items=3, train_counts=np.ones(3))


def test_canonical_csr_sorts_rows_and_gains() -> None:
    ptr, idx, gains = canonical_csr([0, 3, 3, 5], [4, 0, 2, 1, 0], 5, gains=[40.0, 0.0, 20.0, 11.0, 10.0])
    np.testing.assert_array_equal(idx, [0, 2, 4, 0, 1])
    np.testing.assert_array_equal(gains, [0.0, 20.0, 40.0, 10.0, 11.0])
    np.testing.assert_array_equal(ptr, [0, 3, 3, 5])


# ------------------------------------------------------------ ranking, random data
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 12), graded=st.booleans())
def test_ndcg_matches_textbook(seed: int, k: int, graded: bool) -> None:
    rng = np.random.default_rng(seed)
    recs, indptr, indices = random_case(rng, n_users=6, n_items=25, k_max=8)
    if np.all(np.diff(indptr) == 0):
        indptr, indices = csr([[3]] + [[]] * 5)
    gains = rng.integers(1, 6, size=indices.size).astype(float) if graded else np.ones(indices.size)
    scores = []
    for u in range(recs.shape[0]):
        gain_of = dict(
            zip(indices[indptr[u] : indptr[u + 1]].tolist(), gains[indptr[u] : indptr[u + 1]], strict=True)
        )
        if not gain_of:
            continue
        rel_vec = [gain_of.get(int(i), 0.0) if i >= 0 else 0.0 for i in recs[u, :k]]
        dcg = sum(g / np.log2(r + 2) for r, g in enumerate(rel_vec))
        idcg = sum(g / np.log2(r + 2) for r, g in enumerate(sorted(gain_of.values(), reverse=True)[:k]))
        scores.append(dcg / idcg)
    got = ranking_metrics(recs, indptr, indices, ks=(k,), n_items=25, rel_gains=gains)
    assert got[f"ndcg@{k}"] == pytest.approx(np.mean(scores), rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_ranking_kernels_match_refs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    recs, indptr, indices = random_case(rng, n_users=40, n_items=30, k_max=10)
    gains = rng.uniform(0.5, 5, size=indices.size)
    ks = np.array([1, 3, 10, 15], dtype=np.int64)
    ptr, idx, g = canonical_csr(indptr, indices, 30, gains=gains)
    np.testing.assert_allclose(
        ranking_per_user(recs, ptr, idx, g, ks),
        ranking_per_user_ref(recs, indptr, indices, gains, ks),
        rtol=1e-12,
    )
    genres = (rng.random((30, 6)) < 0.3).astype(np.float32)
    norm = np.linalg.norm(genres, axis=1, keepdims=True)
    unit = np.divide(genres, norm, out=np.zeros_like(genres), where=norm > 0)
    np.testing.assert_allclose(
        intra_list_diversity(recs, ks, unit), intra_list_diversity_ref(recs, ks, genres), atol=1e-6
    )


# ---------------------------------------------------------------------------- AUC
AUC_SCORES = np.array(
    [[0.9, 0.5, 0.5, 0.125, 0.75], [0.25, 0.25, 0.875, 0.375, 0.25], [0.5, 0.5, 0.5, 0.5, 0.5]],
    dtype=np.float32,
)


def test_auc_by_hand_with_ties() -> None:
    # u0: positive item 1 (0.5); item 0 excluded; negatives 0.5 (tie: 1/2), 0.125 (win), 0.75 (loss)
    #     -> 1.5 / 3 = 0.5
    # u1: positives 0.875 and 0.375 each beat the three 0.25 negatives -> 6 / 6 = 1
    # u2: nothing held out -> left out of the mean
    rel, excl = csr([[1], [2, 3], []]), csr([[0], [], []])
    assert auc_from_scores(AUC_SCORES, *rel, *excl) == pytest.approx(0.75)
    got = ranking_metrics(
        np.array([[1], [2], [0]]),
        *rel,
        ks=(1,),
        n_items=5,
        scores_for_auc=AUC_SCORES,
        exclude_indptr=excl[0],
        exclude_indices=excl[1],
    )
    assert got["auc"] == pytest.approx(0.75)
    # every item excluded or relevant for the only user: no negative, so no AUC at all
    with pytest.raises(DataError, match="AUC"):
        auc_from_scores(AUC_SCORES[:1], *csr([[1]]), *csr([[0, 2, 3, 4]]))


@pytest.mark.parametrize("seed", range(3))
def test_auc_kernels_match_refs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = 25, 40
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # heavy ties
    _, rel_ptr, rel_idx = random_case(rng, n_users, n_items, 1)
    _, ex_ptr, ex_idx = random_case(rng, n_users, n_items, 1)
    rp, ri, _ = canonical_csr(rel_ptr, rel_idx, n_items)
    xp, xi, _ = canonical_csr(ex_ptr, ex_idx, n_items)
    np.testing.assert_allclose(
        auc_per_user(scores, rp, ri, xp, xi),
        auc_per_user_ref(scores, rel_ptr, rel_idx, ex_ptr, ex_idx),
        rtol=1e-12,
    )
    neg = sample_negatives(rp, ri, xp, xi, np.int64(n_items), np.int64(7), np.uint64(seed))
    np.testing.assert_array_equal(neg, sample_negatives_ref(rp, ri, xp, xi, n_items, 7, seed))
    for u in range(n_users):  # negatives are never relevant or excluded
        forbidden = set(ri[rp[u] : rp[u + 1]]) | set(xi[xp[u] : xp[u + 1]])
        assert not forbidden & set(neg[u].tolist())
    pos_scores = rng.integers(0, 4, size=ri.size).astype(float)
    neg_scores = rng.integers(0, 4, size=(n_users, 5)).astype(float)
    neg_scores[::4] = np.nan
    np.testing.assert_allclose(
        auc_from_pairs(rp, pos_scores, neg_scores), auc_from_pairs_ref(rp, pos_scores, neg_scores), rtol=1e-12
    )


def test_auc_sampled_estimates_full_auc() -> None:
    rng = np.random.default_rng(7)
    n_users, n_items = 30, 300
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)  # float32, as models score
    rel = csr([rng.choice(n_items, 5, replace=False).tolist() for _ in range(n_users)])
    scores[np.repeat(np.arange(n_users), 5), rel[1]] += 1.0  # positives score higher: AUC ~ 0.76
    excl = csr([rng.choice(n_items, 20, replace=False).tolist() for _ in range(n_users)])
    full = auc_from_scores(scores, *rel, *excl)
    sampled = auc_sampled(scores, *rel, *excl, n_negatives=2000, seed=3)
    assert 0.65 < full < 0.9
    assert sampled == pytest.approx(full, abs=0.01)
    # a scoring function gives the same answer as the dense matrix it reads from
    via_fn = auc_sampled(
        lambda rows, items: scores[rows, items], *rel, *excl, n_items=n_items, n_negatives=50, seed=3
    )
    assert via_fn == auc_sampled(scores, *rel, *excl, n_negatives=50, seed=3)
    assert via_fn != auc_sampled(scores, *rel, *excl, n_negatives=50, seed=4)


# --------------------------------------------------------------------- aggregation
def test_mean_std_population_std() -> None:
    # a: 1 and 3 -> mean 2, population std 1 (ddof=0, as Surprise's cross_validate)
    means, stds = mean_std([{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 2.0}])
    assert means == {"a": 2.0, "b": 2.0}
    assert stds == {"a": 1.0, "b": 0.0}
    with pytest.raises(DataError, match="fold 1"):
        mean_std([{"a": 1.0}, {"b": 1.0}])


def test_metrics_module_re_exports_every_public_metric():
    from recsys_cli.evaluation import metrics as M

    assert M.auc_sampled is auc_sampled and M.auc_from_scores is auc_from_scores
    assert M.canonical_csr is canonical_csr and M.ranking_metrics is ranking_metrics

