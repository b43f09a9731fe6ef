"""The synthetic generator: layout, exact counts, determinism, popularity skew and planted structure."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recsys_cli.cli.app import app
from recsys_cli.data import synthetic as G
from recsys_cli.errors import UsageError

SMALL = {"n_ratings": 20_000, "n_users": 300, "n_items": 200}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    record = G.generate("small", **SMALL, factors=8, seed=42, data_dir=root, save_truth=True)
    folder = root / "raw" / "small"
    return record, folder, pl.read_csv(folder / "ratings.csv"), pl.read_csv(folder / "movies.csv")


def test_layout_and_exact_counts(small):
    record, folder, ratings, movies = small
    assert sorted(p.name for p in folder.iterdir()) == ["generate.json", "movies.csv", "ratings.csv", "truth.npz"]
    assert ratings.columns == ["userId", "movieId", "rating", "timestamp"]
    assert movies.columns == ["movieId", "title", "genres"]
    assert (folder / "ratings.csv").read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    assert ratings.height == 20_000 and ratings["userId"].n_unique() == 300
    assert ratings["userId"].min() == 1 and ratings["userId"].max() == 300
    assert ratings["movieId"].min() >= 1 and ratings["movieId"].max() <= 200
    assert movies.height == 200 and movies["movieId"].to_list() == list(range(1, 201))
    per_user = ratings.group_by("userId").len()["len"]
    assert per_user.min() >= 20
    assert ratings.select(pl.struct("userId", "movieId").is_duplicated().any()).item() is False
    assert json.loads((folder / "generate.json").read_text()) == record
    assert record["params"]["n_ratings"] == 20_000 and record["truth"]["n_rated_items"] <= 200


def test_ratings_are_half_stars_and_times_in_range(small):
    record, _, ratings, _ = small
    r = ratings["rating"].to_numpy()
    assert r.min() >= 0.5 and r.max() <= 5.0
    assert np.all(np.isclose(r * 2, np.round(r * 2)))
    assert len(np.unique(r)) >= 8  # half stars are really used
    ts = ratings["timestamp"].to_numpy()
    assert ts.min() >= G._epoch(record["params"]["start"]) and ts.max() <= G._epoch(record["params"]["end"])
    assert 3.0 < r.mean() < 4.0 and 0.7 < r.std() < 1.4


def test_genres_are_movielens_names_and_follow_factors(small):
    _, folder, _, movies = small
    lists = [g.split("|") for g in movies["genres"].to_list()]
    assert all(1 <= len(g) <= 5 and set(g) <= set(G.GENRES) for g in lists)
    truth = np.load(folder / "truth.npz", allow_pickle=False)
    q = truth["item_factors"] / np.linalg.norm(truth["item_factors"], axis=1, keepdims=True)
    cos = q @ truth["genre_directions"].T
    has = np.array([[name in g for name in G.GENRES] for g in lists])
    # items carry the genres their factors point to
    assert cos[has].mean() > cos[~has].mean() + 0.3
    assert truth["user_factors"].shape == (300, 8) and truth["item_factors"].shape == (200, 8)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, small):
    _, folder, _, _ = small
    G.generate("again", **SMALL, seed=42, data_dir=tmp_path)
    G.generate("other", **SMALL, seed=7, data_dir=tmp_path)
    for f in ("ratings.csv", "movies.csv"):
        assert (tmp_path / "raw" / "again" / f).read_bytes() == (folder / f).read_bytes()
    assert (tmp_path / "raw" / "other" / "ratings.csv").read_bytes() != (folder / "ratings.csv").read_bytes()


def test_popularity_is_skewed(tmp_path):
    rec = G.generate("sparse", n_ratings=30_000, n_users=500, n_items=2000, seed=3, data_dir=tmp_path)
    counts = pl.read_csv(tmp_path / "raw" / "sparse" / "ratings.csv")["movieId"].value_counts()["count"].to_numpy()
    top = np.sort(counts)[::-1][:200].sum() / 30_000
    assert top > 0.3  # top 10% of items get well over 10% of ratings
    assert rec["truth"]["top10pct_item_share"] == pytest.approx(top, abs=1e-3)


def _fit_biases(u, i, r, nu, ni, reg=5.0, iters=10):
    mu = r.mean()
    bu, bi = np.zeros(nu), np.zeros(ni)
    for _ in range(iters):
        bu = np.bincount(u, r - mu - bi[i], nu) / (np.bincount(u, minlength=nu) + reg)
        bi = np.bincount(i, r - mu - bu[u], ni) / (np.bincount(i, minlength=ni) + reg)
    return mu, bu, bi


def _als(u, i, res, nu, ni, k=8, reg=2.0, iters=12, seed=0):
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(0, 0.1, (nu, k)), rng.normal(0, 0.1, (ni, k))
    for _ in range(iters):
        for rows, cols, X, Y, n in ((u, i, P, Q, nu), (i, u, Q, P, ni)):
            for a in range(n):
                m = rows == a
                Ya = Y[cols[m]]
                X[a] = np.linalg.solve(Ya.T @ Ya + reg * np.eye(k), Ya.T @ res[m])
    return P, Q


def test_planted_structure_is_recoverable(small):
    _, _, ratings, _ = small
    u = ratings["userId"].to_numpy() - 1
    i = ratings["movieId"].to_numpy() - 1
    r = ratings["rating"].to_numpy().astype(float)
    test = np.random.default_rng(0).random(len(r)) < 0.2
    tr = ~test
    mu, bu, bi = _fit_biases(u[tr], i[tr], r[tr], 300, 200)
    P, Q = _als(u[tr], i[tr], r[tr] - mu - bu[u[tr]] - bi[i[tr]], 300, 200)
    base = mu + bu[u[test]] + bi[i[test]]
    full = base + np.einsum("ij,ij->i", P[u[test]], Q[i[test]])
    sst = ((r[test] - r[test].mean()) ** 2).sum()
    r2_bias = 1 - ((r[test] - base) ** 2).sum() / sst
    r2_full = 1 - ((r[test] - full) ** 2).sum() / sst
    assert r2_bias > 0.1
    assert r2_full > r2_bias + 0.2, (r2_bias, r2_full)


def test_user_counts_exact_and_bounded():
    dense = G.make_spec(n_ratings=5000, n_users=100, n_items=80, min_per_user=10)
    counts = G.user_counts(np.random.default_rng(1), dense)
    assert counts.sum() == 5000 and counts.min() >= 10 and counts.max() <= 80
    sparse = G.make_spec(n_ratings=40_000, n_users=400, n_items=5000)
    counts = G.user_counts(np.random.default_rng(1), sparse)
    assert counts.sum() == 40_000 and counts.min() == 20
    assert counts.max() > 5 * np.median(counts)  # heavy tail


def test_dense_users_get_exact_distinct_items():
    # users needing nearly every item exercise the exact top-up path
    spec = G.make_spec(n_ratings=900, n_users=20, n_items=50, seed=5)
    rng = np.random.default_rng(spec.seed)
    truth = G._Truth(rng, spec)
    need = G.user_counts(rng, spec)
    rows, items = G.sample_items(rng, truth, np.arange(20), need)
    assert np.array_equal(np.bincount(rows, minlength=20), need)
    assert len(np.unique(rows * 50 + items)) == 900
    assert np.all(np.diff(rows) >= 0)


def test_spec_validation():
    assert G.make_spec(preset="ml-1m").n_users == 6040
    assert G.make_spec(preset="ml-1m", n_ratings=50_000).n_ratings == 50_000
    assert G.make_spec(n_ratings=100, n_users=10, n_items=50).min_per_user == 10
    for bad in ({"preset": "ml-5"}, {"n_ratings": 100}, {"n_ratings": 5, "n_users": 10, "n_items": 5},
                {"n_ratings": 100, "n_users": 2, "n_items": 10}, {"n_ratings": 100, "n_users": 10, "n_items": 50,
                                                                   "min_per_user": 11}):
        with pytest.raises(UsageError):
            G.make_spec(**bad)


runner = CliRunner()


def test_generate_cli(tmp_path):
    args = ["generate", "cli-set", "--ratings", "3000", "--users", "60", "--items", "150", "--min-per-user", "30",
            "--data-dir", str(tmp_path), "--format", "json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_ratings"] == 3000 and out["next"] == "recsys preprocess cli-set"
    ratings = pl.read_csv(tmp_path / "raw" / "cli-set" / "ratings.csv")
    assert ratings.group_by("userId").len()["len"].min() == 30
    assert runner.invoke(app, args).exit_code == 2  # exists, no --force
    assert runner.invoke(app, [*args, "--force", "--seed", "9"]).exit_code == 0
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name.startswith(".")]  # no temp folders left
    assert runner.invoke(app, ["generate", "ml-100k", "--data-dir", str(tmp_path)]).exit_code == 2
    help_ = runner.invoke(app, ["generate", "--help"])
    assert help_.exit_code == 0 and "Examples" in help_.output and "--preset" in help_.output


def test_guided_search_matches_searchsorted():
    rng = np.random.default_rng(0)
    for n, hi in ((1, 1.0), (7, 1.0), (5000, 1.0), (300, 19.0)):
        w = (rng.permutation(n) + 3.0) ** -1.3
        cdf = np.cumsum(w) / w.sum() * hi
        cdf[-1] = hi
        x = np.r_[rng.random(20_000) * hi, 0.0, cdf[:-1], np.nextafter(cdf[:-1], 0)]
        got = G._guided_search(cdf, G._guide(cdf), x)
        assert np.array_equal(got, np.searchsorted(cdf, x, side="right"))
