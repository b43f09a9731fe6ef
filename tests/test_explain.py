"""`explain`: the parts of every explanation add up to the score `recommend` showed, per model and path.

Factor models are also checked against implicit's own ALS `explain` (same contributions) and
against their exact solves (a folded-in user's residual is 0); item-knn's contributions are
checked by leaving a rated item out (the score drops by exactly its contribution).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys_cli.data.dataset import Interactions
from recsys_cli.models.explain import Explanation, ridge_parts
from recsys_cli.models.registry import create_model

N_USERS, N_ITEMS = 60, 40
COLD = (38, 39)  # items nobody rated (hybrid-als and content score them from genres)


def low_rank() -> Interactions:
    """Ratings 3 + p_u . q_i (rank 3) + noise, rounded to 1..5, about half the pairs; two cold items."""
    rng = np.random.default_rng(3)
    P, Q = rng.normal(size=(N_USERS, 3)), rng.normal(size=(N_ITEMS, 3))
    mask = rng.random((N_USERS, N_ITEMS)) < 0.5
    mask[:, list(COLD)] = False
    u, i = np.nonzero(mask)
    r = np.clip(np.round(3 + (P[u] * Q[i]).sum(1) + rng.normal(0, 0.3, len(u))), 1, 5).astype(np.float32)
    genres = np.zeros((N_ITEMS, 3), np.float32)
    genres[np.arange(N_ITEMS), np.arange(N_ITEMS) % 3] = 1
    genres[::5, 1] = 1
    return Interactions(users=u.astype(np.int32), items=i.astype(np.int32), ratings=r,
                        user_ids=np.arange(1, N_USERS + 1, dtype=np.int64),
                        item_ids=np.arange(501, 501 + N_ITEMS, dtype=np.int64), rating_scale=(1.0, 5.0),
                        item_genres=genres, genre_names=("Comedy", "Drama", "Horror"), dataset="lowrank",
                        fingerprint="sha256:lowrank")


@pytest.fixture(scope="module")
def data():
    return low_rank()


CASES = [
    ("svd", {"epochs": 40}, "items"),
    ("svd", {"epochs": 40, "biased": False}, "items"),
    ("svdpp", {"epochs": 20}, "items"),
    ("als", {"factors": 8}, "items"),
    ("als", {"factors": 8, "solver": "cholesky"}, "items"),
    ("ials", {"factors": 8, "reg": 1.0}, "items"),
    ("ials", {"factors": 8, "reg": 1.0, "interactions": "threshold", "weight": "rating"}, "items"),
    ("hybrid-als", {"factors": 8}, "items"),
    ("item-knn", {}, "items"),
    ("item-knn", {"rank_by": "mean", "prediction": "means"}, "items"),
    ("content", {}, "items"),
    ("ease", {"reg": 50.0}, "items"),
    ("ease", {"reg": 50.0, "weight": "rating", "interactions": "threshold", "min_rating": 4.0}, "items"),
    ("rp3beta", {}, "items"),
    ("bias", {}, "baseline"),
    ("popularity", {}, "popular"),
]


def user_ratings(data: Interactions, u: int) -> tuple[np.ndarray, np.ndarray]:
    csr = data.csr()
    lo, hi = csr.indptr[u], csr.indptr[u + 1]
    return csr.indices[lo:hi].astype(np.int64), csr.data[lo:hi].astype(np.float32)


@pytest.mark.parametrize("name,params,kind", CASES, ids=[f"{n}{p}" for n, p, _ in CASES])
def test_parts_add_up_to_the_recommended_score(data, name, params, kind):
    model = create_model(name, params).fit(data, seed=1)
    users = np.arange(0, N_USERS, 6)
    recs = model.recommend(data.user_ids[users], 8)
    for r, u in enumerate(users):
        items = np.searchsorted(model.item_ids, recs.items[r])
        rated, values = user_ratings(data, u)
        exps = model.explain(int(u), items, rated=rated, ratings=values)
        assert [e.kind for e in exps if e.kind != "genres"] == [kind] * sum(e.kind != "genres" for e in exps)
        totals = np.array([e.total for e in exps])
        np.testing.assert_allclose(totals, recs.scores[r], rtol=1e-5, atol=2e-5)
        for e in exps:  # largest contribution first; every rated item explained is one the user rated
            assert np.all(np.diff(e.contributions) <= 0)
            if e.kind == "items":
                assert set(e.keys.tolist()) <= set(rated.tolist())
    # A new user folded in: the same identity on the fold-in scores.
    if model.supports_fold_in:
        raw = np.array([501, 505, 510, 520, 533])
        vals = np.array([5.0, 4.0, 1.0, 5.0, 2.0])
        new = model.recommend_new_user(raw, vals, 8)
        exps = model.explain(-1, np.searchsorted(model.item_ids, new.items[0]), rated=raw - 501, ratings=vals)
        np.testing.assert_allclose([e.total for e in exps], new.scores[0], rtol=1e-5, atol=2e-5)


def test_cold_items_of_hybrid_als_are_explained_by_genre(data):
    model = create_model("hybrid-als", {"factors": 8}).fit(data, seed=1)
    recs = model.recommend(data.user_ids[:10], N_ITEMS)  # every unseen item, cold ones included
    seen_cold = 0
    for r in range(10):
        items = np.searchsorted(model.item_ids, recs.items[r][recs.items[r] >= 0])
        rated, values = user_ratings(data, r)
        for i, e, s in zip(items, model.explain(r, items, rated=rated, ratings=values), recs.scores[r], strict=False):
            if i in COLD:
                seen_cold += 1
                assert e.kind == "genres"
                assert set(e.keys.tolist()) == set(np.flatnonzero(data.item_genres[i]).tolist())
                assert e.total == pytest.approx(float(s), abs=2e-5)
                # the genre parts are the user's affinity x_u . W_g + w_b,g, the residual what the stored
                # vector differs from the current projection
                x = model.X[r].astype(np.float64)
                for g, c in zip(e.keys, e.contributions, strict=True):
                    assert c == pytest.approx(float(model.W[g] @ x + model.wb[g]), abs=1e-6)
            else:
                assert e.kind == "items"
    assert seen_cold == 20


def test_a_folded_in_users_parts_are_the_exact_solve(data):
    """A new user's vector is the ridge solve itself: no residual, contributions + base = score."""
    for name, params in (("als", {"factors": 8}), ("svd", {"epochs": 30}), ("ials", {"factors": 8, "reg": 1.0})):
        model = create_model(name, params).fit(data, seed=1)
        raw, vals = np.array([502, 507, 511, 530]), np.array([5.0, 1.0, 4.0, 3.0])
        scores = model.fold_in(raw, vals)
        items = np.array([0, 3, 12, 25])
        exps = model.explain(-1, items, rated=raw - 501, ratings=vals)
        for i, e in zip(items, exps, strict=True):
            assert abs(e.residual) < 1e-5
            assert e.base + e.contributions.sum() == pytest.approx(float(scores[i]), abs=2e-5)


def test_ials_contributions_equal_implicits_explain(data):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    import scipy.sparse as sp

    model = create_model("ials", {"factors": 8, "reg": 2.0, "alpha": 3.0}).fit(data, seed=1)
    peer = implicit_als.AlternatingLeastSquares(factors=8, regularization=2.0, alpha=1.0, random_state=0)
    peer.item_factors = model.Y.astype(np.float32)
    peer.user_factors = model.X.astype(np.float32)
    u = 5
    rated, values = user_ratings(data, u)
    conf = 1.0 + 3.0 * np.log1p(values.astype(np.float64))  # our c_ui = 1 + alpha * log(1 + r)
    row = sp.csr_matrix((conf, (np.zeros(len(rated), int), rated)), shape=(1, N_ITEMS))
    for i in (0, 17, 33):
        e = model.explain(u, np.array([i]), rated=rated, ratings=values)[0]
        total, top, _ = peer.explain(0, row, i, N=len(rated))
        ours = dict(zip(e.keys.tolist(), e.contributions.tolist(), strict=True))
        assert len(top) == len(rated)
        for j, c in top:
            assert ours[int(j)] == pytest.approx(float(c), rel=1e-4, abs=1e-6)
        assert e.contributions.sum() == pytest.approx(total, rel=1e-4, abs=1e-6)


def test_item_knn_contribution_is_what_leaving_the_item_out_removes(data):
    """rank_by=sum, basic: the score is a sum over rated neighbours, so dropping one removes exactly its part."""
    model = create_model("item-knn", {"prediction": "basic", "similarity": "cosine"}).fit(data, seed=1)
    raw, vals = np.array([501, 504, 509, 516, 522, 530]), np.array([5.0, 4.0, 2.0, 5.0, 3.0, 1.0])
    full = model.fold_in(raw, vals)
    target = 12
    e = model.explain(-1, np.array([target]), rated=raw - 501, ratings=vals)[0]
    assert e.total == pytest.approx(float(full[target]), abs=1e-5)
    parts = dict(zip(e.keys.tolist(), e.contributions.tolist(), strict=True))
    for k in range(len(raw)):
        keep = np.arange(len(raw)) != k
        without = model.fold_in(raw[keep], vals[keep])[target]
        assert full[target] - without == pytest.approx(parts.get(int(raw[k] - 501), 0.0), abs=1e-5)


def test_ridge_parts_on_a_hand_sized_system():
    """Two rated rows in 2-D: contributions t_j z.A^-1 z_j by hand, and the residual of a perturbed w."""
    A = np.array([[2.0, 0.0], [0.0, 4.0]])
    Z = np.array([[1.0, 0.0], [0.0, 2.0]])
    t = np.array([3.0, 1.0])
    w = np.linalg.solve(A, Z.T @ t)  # [1.5, 0.5]
    contrib, resid = ridge_parts(A, Z, t, w, np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(contrib, [[1.5, 0.5]])  # 3 * (1/2) and 1 * (2/4)
    assert resid[0] == pytest.approx(0.0)
    contrib, resid = ridge_parts(A, Z, t, w + np.array([0.0, 0.25]), np.array([[1.0, 1.0]]))
    assert resid[0] == pytest.approx(0.25) and contrib.sum() + resid[0] == pytest.approx(2.25)


def test_ease_contribution_is_what_leaving_the_item_out_removes(data):
    """ease's score is linear in the user's row: folding in without rated item j lowers item i's score by
    exactly j's contribution x_uj B_ji."""
    model = create_model("ease", {"reg": 50.0}).fit(data, seed=1)
    raw, vals = np.array([501, 505, 510, 520, 533]), np.array([5.0, 4.0, 1.0, 5.0, 2.0])
    items = np.array([2, 7, 30])
    full = model.fold_in(raw, vals)
    exps = model.explain(-1, items, rated=raw - 501, ratings=vals)
    for j in range(len(raw)):
        without = model.fold_in(np.delete(raw, j), np.delete(vals, j))
        for i, e in zip(items, exps, strict=True):
            c = float(e.contributions[e.keys.tolist().index(raw[j] - 501)])
            assert full[i] - without[i] == pytest.approx(c, abs=2e-6)
            assert c == pytest.approx(float(model.B[raw[j] - 501, i]), abs=1e-6)  # binary x_uj = 1


def test_ease_items_outside_max_items_are_the_popular_tail(data):
    """With max_items the uncovered items rank below every covered one, by popularity: kind "popular",
    its whole score (known and folded-in users); the covered ones still split over the rated items."""
    model = create_model("ease", {"reg": 50.0, "max_items": 20}).fit(data, seed=1)
    outside = set(np.flatnonzero(model.col < 0).tolist())
    recs = model.recommend(data.user_ids[:6], N_ITEMS)
    raw, vals = np.array([501, 505, 510, 520, 533]), np.array([5.0, 4.0, 1.0, 5.0, 2.0])
    new = model.recommend_new_user(raw, vals, N_ITEMS)
    lists = [(u, recs.items[u], recs.scores[u], {}) for u in range(6)]
    lists.append((-1, new.items[0], new.scores[0], {"rated": raw - 501, "ratings": vals}))
    tail = 0
    for u, listed, scores, extra in lists:
        ok = listed >= 0
        items = np.searchsorted(model.item_ids, listed[ok])
        exps = model.explain(u, items, **extra)
        np.testing.assert_allclose([e.total for e in exps], scores[ok], rtol=1e-5, atol=2e-5)
        for i, e in zip(items.tolist(), exps, strict=True):
            assert e.kind == ("popular" if i in outside else "items")
            tail += i in outside
    assert tail >= 20


def test_models_without_an_explanation_say_none(data):
    model = create_model("bpr", {"factors": 8, "epochs": 5}).fit(data, seed=1)
    assert [e.kind for e in model.explain(0, np.array([1, 2]))] == ["none", "none"]
    assert Explanation("none").total == 0.0


# ----------------------------------------------------------------------------- API and CLI
@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory, data):
    """A processed copy of the low-rank set (so a saved run can reload its training ratings) and runs of it."""
    import polars as pl

    import recsys_cli as rs

    root = tmp_path_factory.mktemp("explain")
    frame = pl.DataFrame({"user": data.user_ids[data.users], "item": data.item_ids[data.items],
                          "rating": data.ratings, "timestamp": np.arange(len(data), dtype=np.int64)})
    ds = rs.from_frame(frame, user="user", item="item", rating="rating", timestamp="timestamp")
    return root, ds


def test_api_reasons_column_adds_up_and_plain_recommend_is_unchanged(run_dirs):
    import recsys_cli as rs

    _, ds = run_dirs
    model = rs.train("als", ds, seed=1, factors=8)
    plain = model.recommend([1, 2, 999], n=4)
    explained = model.recommend([1, 2, 999], n=4, explain=True)
    assert explained.drop("reasons").equals(plain)
    for row in explained.iter_rows(named=True):
        total = sum(p["contribution"] for p in row["reasons"])
        assert total == pytest.approx(row["score"], abs=1e-5 * len(row["reasons"]) + 1e-5)
        kinds = [p["kind"] for p in row["reasons"]]
        if row["user_id"] == 999:
            assert kinds == ["popular"] and row["reasons"][0]["title"] == "popular fallback"
        else:
            assert kinds[:3] == ["rated"] * 3 and "baseline" in kinds
            assert all(p["item_id"] is not None for p in row["reasons"][:3])  # no titles in this frame
    folded = model.fold_in({501: 5, 502: 4, 530: 1}, n=3, explain=True)
    for row in folded.iter_rows(named=True):
        assert {p["item_id"] for p in row["reasons"] if p["kind"] == "rated"} <= {501, 502, 530}
        assert sum(p["contribution"] for p in row["reasons"]) == pytest.approx(row["score"], abs=5e-5)


def test_cli_explain_reads_the_runs_training_ratings(run_dirs, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import recsys_cli as rs
    from recsys_cli.cli.app import app

    _, ds = run_dirs
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(tmp_path / "art"))
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))
    rs.save(rs.train("svd", ds, seed=1, epochs=20), "svd-lr")
    runner = CliRunner()
    plain = runner.invoke(app, ["recommend", "svd-lr", "--user", "3", "-n", "3", "--format", "json"])
    assert plain.exit_code == 0 and "reasons" not in plain.stdout
    # The run's dataset ("data": built from a frame) is not processed on disk: a factor model cannot
    # read the user's training ratings, and says so in one line.
    res = runner.invoke(app, ["recommend", "svd-lr", "--user", "3", "-n", "3", "--explain", "--format", "json"])
    assert res.exit_code != 0 and "training ratings" in res.output
    # item-knn keeps its ratings in the run: no dataset needed.
    rs.save(rs.train("item-knn", ds, seed=1), "knn-lr")
    res = runner.invoke(app, ["recommend", "knn-lr", "--user", "3", "-n", "3", "--explain", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    base = json.loads(runner.invoke(app, ["recommend", "knn-lr", "--user", "3", "-n", "3", "--format", "json"]).stdout)
    assert [{k: v for k, v in r.items() if k != "reasons"} for r in rows] == base
    for r in rows:
        assert sum(p["contribution"] for p in r["reasons"]) == pytest.approx(r["score"], abs=1e-4)
    table = runner.invoke(app, ["recommend", "knn-lr", "--user", "3", "-n", "2", "--explain", "--format", "table"])
    first = next(p for p in rows[0]["reasons"] if p["kind"] == "rated")
    assert table.exit_code == 0 and f"{first['contribution']:+.3f}" in table.stdout


def test_every_registered_model_answers_explain(data):
    """No model crashes on explain: each gives one explanation per item, adding up to its score or kind 'none'."""
    from recsys_cli.models.registry import model_names

    small = {"svd": {"epochs": 5}, "svdpp": {"epochs": 3}, "bpr": {"epochs": 3}, "als": {"iterations": 3},
             "ials": {"iterations": 3}, "hybrid-als": {"iterations": 3},
             "blend": {"models": "bias,item-knn", "params": '{"item-knn": {"k": 10}}'}}
    for name in model_names():
        model = create_model(name, small.get(name, {})).fit(data, seed=1)
        recs = model.recommend(data.user_ids[[4]], 5)
        items = np.searchsorted(model.item_ids, recs.items[0])
        rated, values = user_ratings(data, 4)
        exps = model.explain(4, items, rated=rated, ratings=values)
        assert len(exps) == 5, name
        for e, s in zip(exps, recs.scores[0], strict=True):
            assert e.kind == "none" or e.total == pytest.approx(float(s), abs=2e-5), name
