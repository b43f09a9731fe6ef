"""The `content` model over genres and tags: tag TF-IDF, planted tag signal, state, genre-only parity."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recsys_cli.artifacts import ArtifactStore
from recsys_cli.data.dataset import load_dataset
from recsys_cli.data.preprocess import preprocess
from recsys_cli.errors import ConfigError
from recsys_cli.models._kernels.baseline import baseline_als
from recsys_cli.models._kernels.content import pair_ratios, pair_ratios_ref
from recsys_cli.models.content import ContentModel, tag_tfidf
from recsys_cli.models.registry import create_model

# Movies 1-4 comedies, 5-8 horror, 9-10 documentaries, 11 never rated and without genres.
MOVIES = (
    (1, "Laugh One (1990)", "Comedy|Romance"), (2, "Laugh Two (1991)", "Comedy"), (3, "Laugh Three (1992)", "Comedy"),
    (4, "Laugh Four (1993)", "Comedy"), (5, "Fright One (1980)", "Horror"), (6, "Fright Two (1981)", "Horror"),
    (7, "Fright Three (1982)", "Horror|Thriller"), (8, "Fright Four (1983)", "Horror"),
    (9, "Brain Doc (2001)", "Documentary"), (10, "Plain Doc (2002)", "Documentary"),
    (11, "Unrated Puzzle (2010)", "(no genres listed)"),
)
# User 1 loves comedies 1-3 and dislikes horror; doc 10 is rated a bit higher than doc 9 by others.
RATINGS = (
    (1, 1, 5.0), (1, 2, 5.0), (1, 3, 5.0), (1, 5, 2.0), (1, 6, 2.0),
    (2, 1, 4.0), (2, 2, 4.0), (2, 4, 2.0), (2, 5, 3.0), (2, 9, 3.0), (2, 10, 3.5),
    (3, 3, 4.0), (3, 4, 2.0), (3, 6, 4.0), (3, 7, 4.0), (3, 9, 3.0), (3, 10, 3.5),
    (4, 5, 5.0), (4, 6, 5.0), (4, 7, 4.0), (4, 8, 4.0), (4, 1, 2.0),
    (5, 2, 4.0), (5, 8, 3.0), (5, 9, 3.0), (5, 10, 3.5), (5, 7, 5.0),
    (6, 1, 3.0), (6, 3, 4.0), (6, 5, 4.0), (6, 8, 2.0),
)
# The comedies 1-3 and doc 9 share "mind-bending" (written many ways); horror shares "gory".
TAGS = (
    (2, 1, "Mind-Bending"), (3, 1, "mind-bending"), (4, 2, " MIND-BENDING "), (5, 3, "mind-bending"),
    (6, 9, "Mind-Bending"), (6, 9, "mind-bending"), (2, 9, "mind-bending"), (3, 11, "mind-bending"),
    (4, 5, "gory"), (4, 6, "Gory"), (3, 7, "gory"),
    (2, 4, "twist ending"), (5, 9, "twist   ending"),  # on 2 items only: below min_tag_count=3
    (2, 99, "mind-bending"),  # item 99 is not in the catalogue: dropped
)


def write_release(root: Path) -> Path:
    """An ml-20m-style CSV release (ratings.csv, movies.csv, tags.csv, links.csv) with the rows above."""
    folder = root / "ml-20m"
    folder.mkdir(parents=True)

    def rows(name: str, header: list[str], body) -> None:
        with open(folder / name, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(body)

    rows("ratings.csv", ["userId", "movieId", "rating", "timestamp"],
         [(u, i, f"{r:.1f}", 1_000_000_000 + k) for k, (u, i, r) in enumerate(RATINGS)])
    rows("movies.csv", ["movieId", "title", "genres"], MOVIES)
    rows("tags.csv", ["userId", "movieId", "tag", "timestamp"],
         [(u, i, t, 1_100_000_000 + k) for k, (u, i, t) in enumerate(TAGS)])
    rows("links.csv", ["movieId", "imdbId", "tmdbId"], [(m[0], 100 + m[0], 200 + m[0]) for m in MOVIES])
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tagged")
    meta = preprocess(str(write_release(root / "raw")), name="tagged", data_dir=root / "data")
    assert meta["has_tags"] is True
    return load_dataset("tagged", root / "data")


@pytest.fixture(scope="module")
def data(dataset):
    return dataset.interactions()


def fit(data, **params) -> ContentModel:
    return create_model("content", params).fit(data, seed=1)


def old_genre_scores(data, shrink=1.0, reg_u=15.0, reg_i=10.0) -> np.ndarray:
    """The genre-only formula of the content model before tags, written out densely."""
    g = (data.item_genres > 0).astype(np.float32)
    idf = np.log(g.shape[0] / np.maximum(g.sum(axis=0), 1.0)) + 1.0
    f = g * idf[None, :].astype(np.float32)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    F = (f / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    mu = float(data.global_mean)
    bu, bi = baseline_als(data.users, data.items, data.ratings, data.n_users, data.n_items, mu, reg_u=reg_u, reg_i=reg_i)
    resid = data.ratings - (mu + bu[data.users] + bi[data.items])
    A = np.zeros((data.n_users, F.shape[1]), np.float64)
    B = np.zeros((data.n_users, F.shape[1]), np.float64)
    np.add.at(A, data.users, resid[:, None] * F[data.items])
    np.add.at(B, data.users, F[data.items])
    return mu + bu[:, None] + bi[None, :] + (A @ F.T) / (B @ F.T + shrink)


# ----- (1) tag TF-IDF on a hand-computed case -----------------------------------------------
def test_tag_tfidf_hand_computed():
    items = [0, 0, 0, 0, 1, 2, 2, 2]
    users = [1, 2, 1, 3, 3, 1, 2, 1]
    tags = ["Funny", " funny ", "FUNNY", "dark \t comedy", "funny", "Dark Comedy", "dark comedy", "rare"]
    mat, names = tag_tfidf(items, users, tags, 4, min_tag_count=2, max_tags=10)
    # "rare" is on one item only; both others are on 2 of 4 items (idf = ln 2 + 1), ties by name.
    assert names == ["dark comedy", "funny"]
    got = mat.toarray()
    # item 0: "funny" by 2 distinct users (user 1 twice counts once) -> 1 + ln 2; "dark comedy" once -> 1.
    row0 = np.array([1.0, 1.0 + math.log(2.0)])
    np.testing.assert_allclose(got[0], row0 / np.linalg.norm(row0), rtol=1e-6)
    np.testing.assert_allclose(got[1:], [[0, 1], [1, 0], [0, 0]], atol=1e-7)
    assert mat.dtype == np.float32
    # max_tags keeps the most frequent; a 3-item minimum keeps none.
    assert tag_tfidf(items, users, tags, 4, min_tag_count=2, max_tags=1)[1] == ["dark comedy"]
    assert tag_tfidf(items, users, tags, 4, min_tag_count=3)[0].shape == (4, 0)
    # idf over the catalogue: "x" on 3 of 5 items, "y" on 1 of 5 (kept with min_tag_count=1).
    mixed, names = tag_tfidf([0, 1, 2, 0], [1, 1, 1, 2], ["x", "x", "x", "y"], 5, min_tag_count=1)
    assert names == ["x", "y"]
    row = np.array([math.log(5 / 3) + 1, math.log(5) + 1])
    np.testing.assert_allclose(mixed.toarray()[0], row / np.linalg.norm(row), rtol=1e-6)
    np.testing.assert_allclose(mixed.toarray()[1:, 0], [1, 1, 0, 0])


def test_item_features_join_blocks(data):
    model = fit(data, tag_weight=2.0)
    assert model.tag_names.tolist() == ["mind-bending", "gory"]
    F = model.F.toarray()
    n_g = int(model.n_genre_features)
    assert F.shape == (data.n_items, n_g + 2)
    doc = data.genre_names.index("Documentary")
    i9 = data.item_index([9])[0]
    # Doc 9: one genre and one kept tag, each block of norm 1, tag block weighted 2, joined and normalised.
    want = np.zeros(n_g + 2)
    want[doc], want[n_g] = 1.0, 2.0
    np.testing.assert_allclose(F[i9], want / math.sqrt(5.0), rtol=1e-6)
    # An item without tags keeps its genre-only vector exactly; item 11 is tags only.
    i10, i11 = data.item_index([10, 11])
    g = (data.item_genres > 0).astype(np.float64)
    idf = np.log(data.n_items / np.maximum(g.sum(axis=0), 1)) + 1
    np.testing.assert_allclose(F[i10, :n_g], g[i10] * idf / np.linalg.norm(g[i10] * idf), rtol=1e-6)
    assert F[i10, n_g:].sum() == 0
    np.testing.assert_allclose(F[i11], np.eye(n_g + 2)[n_g], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1.0, rtol=1e-6)
    assert model.fit_info == {"genre_features": n_g, "tag_features": 2, "tags": "used"}


def test_item_tags_are_loaded_on_demand_and_mapped(dataset):
    data = dataset.interactions()
    assert "tags" not in data._cache  # building Interactions does not read tags.parquet
    items, users, tags = data.item_tags()
    assert "tags" in data._cache
    assert len(items) == len(TAGS) - 1  # the tag on item 99 (not in the catalogue) is dropped
    assert data.item_ids[items].tolist() == [t[1] for t in TAGS[:-1]]
    assert users.tolist() == [t[0] for t in TAGS[:-1]] and tags[1] == "mind-bending"
    assert replace(data, tags_path=None).item_tags() is None


def _rows(data, pairs):
    """Row positions of the given raw (user, item) ratings."""
    u, i = data.user_index([p[0] for p in pairs]), data.item_index([p[1] for p in pairs])
    return [int(np.flatnonzero((data.users == a) & (data.items == b))[0]) for a, b in zip(u, i, strict=True)]


def _tagged(data):
    items, users, tags = data.item_tags()
    return sorted(zip(users.tolist(), data.item_ids[items].tolist(), tags.tolist(), strict=True))


def test_tags_on_held_out_ratings_are_hidden(data, dataset):
    everything = _tagged(data)
    # Hold out user 2's rating of movie 1 and user 4's of movie 5 (both tagged by them) by mask ...
    mask = np.ones(len(data), dtype=bool)
    mask[_rows(data, [(2, 1), (4, 5)])] = False
    train = data.subset(mask)
    assert _tagged(train) == [t for t in everything if (t[0], t[1]) not in {(2, 1), (4, 5)}]
    assert train.hidden_tags == 2
    # ... then user 5's rating of movie 9 by an index array, one step further: hidden too.
    keep = np.flatnonzero(np.arange(len(train)) != _rows(train, [(5, 9)])[0])
    smaller = train.subset(keep)
    assert _tagged(smaller) == [t for t in everything if (t[0], t[1]) not in {(2, 1), (4, 5), (5, 9)}]
    assert smaller.hidden_tags == 3
    # Tags on items the user never rated stay (user 3 tagged movies 1 and 11 without rating them).
    assert (3, 1, "mind-bending") in _tagged(smaller) and (3, 11, "mind-bending") in _tagged(smaller)
    model = fit(smaller)
    assert model.fit_info["tags"] == "used (3 on held-out ratings hidden)"
    assert fit(data).fit_info["tags"] == "used"
    # A named split does the same: every hidden tag is on a rating of the test part.
    n_hidden = 0
    for split in ("random", "user"):
        test = dataset.interactions(split, "test")
        held = set(zip(test.user_ids[test.users].tolist(), test.item_ids[test.items].tolist(), strict=True))
        train = dataset.interactions(split, "train")
        assert _tagged(train) == [t for t in everything if (t[0], t[1]) not in held]
        n_hidden += train.hidden_tags
    assert n_hidden > 0  # the splits do hold out some tagged ratings


# ----- (2) a planted item with shared tags and no genre overlap -----------------------------
def test_shared_tags_lift_an_item_without_genre_overlap(data):
    on, off = fit(data), fit(data, use_tags=False)
    everything = data.n_items

    def rank(model, item):
        recs = model.recommend([1], everything)
        return recs.items[0].tolist().index(item), recs.scores[0][recs.items[0].tolist().index(item)]

    rank_on, score_on = rank(on, 9)
    rank_off, score_off = rank(off, 9)
    assert rank_on < rank_off
    assert score_on > score_off + 0.05
    assert set(on.recommend([1], 2).items[0].tolist()) == {9, 11}  # the two unseen mind-bending items
    assert rank(off, 10)[0] < rank_off and rank(on, 10)[0] > rank_on  # doc 10 led without tags only
    # Doc 9 is now similar to the mind-bending comedies; without tags only to doc 10.
    assert set(on.similar_items(9, 4)[0].tolist()) >= {1, 2, 3}
    assert off.similar_items(9, 1)[0].tolist() == [10]
    # Never-rated item 11 has only a tag: scored from it with tags, user-bias fallback without.
    p_on, lab_on = on.predict([1], [11])
    p_off, lab_off = off.predict([1], [11])
    assert lab_on == ["genre"] and lab_off == ["user_bias"]
    assert p_on[0] > p_off[0] + 0.05


def test_pairs_and_batches_match_full_scores(data):
    model = fit(data)
    users = np.flatnonzero(data.user_counts() > 0)
    full = model._score_users(users)
    uu, ii = np.meshgrid(users, np.arange(data.n_items), indexing="ij")
    pairs = model._predict_known(uu.ravel(), ii.ravel()).reshape(full.shape)
    np.testing.assert_allclose(pairs, full, rtol=1e-5, atol=1e-5)
    model._profile_batch = lambda: 2  # several user batches in one call
    np.testing.assert_allclose(model._predict_known(uu.ravel(), ii.ravel()).reshape(full.shape), full, rtol=1e-5, atol=1e-5)
    # A new user with user 1's ratings also gets the two unseen mind-bending items first.
    raw = [r for r in RATINGS if r[0] == 1]
    recs = model.recommend_new_user([r[1] for r in raw], [r[2] for r in raw], 2)
    assert set(recs.items[0].tolist()) == {9, 11}


def test_pair_ratios_kernel_matches_reference():
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    F = sp.random(40, 25, density=0.2, random_state=4, dtype=np.float32, format="csr")
    A = rng.normal(size=(7, 25)).astype(np.float32)
    B = rng.random((7, 25)).astype(np.float32)
    rows, items = rng.integers(0, 7, 300), rng.integers(0, 40, 300)
    args = (A, B, rows, items, F.indptr, F.indices, F.data, 0.5)
    np.testing.assert_allclose(pair_ratios(*args), pair_ratios_ref(*args), rtol=1e-10, atol=1e-12)
    assert (pair_ratios(*args)[np.diff(F.indptr)[items] == 0] == 0).all()


# ----- (3) state round trip ---------------------------------------------------------------------
def test_save_load_round_trip_with_tags(data, tmp_path):
    model = fit(data)
    store = ArtifactStore(tmp_path)
    store.save("tagged", model, dataset="tagged", fingerprint=data.fingerprint, split=None, seed=1, train_seconds=0.1)
    loaded, manifest = store.load("tagged")
    assert manifest["fit_info"]["tags"] == "used" and manifest["fit_info"]["tag_features"] == 2
    state = model.state()
    assert int(state["model.n_tag_features"]) == 2 and state["model.tag_names"].dtype.kind == "U"
    assert "model.A" not in state  # no users x features profiles are stored
    users = [1, 2, 3, 4, 5, 6, 777]
    a, b = model.recommend(users, 5), loaded.recommend(users, 5)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    us, its = np.repeat([1, 3, 6], 11), np.tile(np.arange(1, 12), 3)
    np.testing.assert_array_equal(model.predict(us, its)[0], loaded.predict(us, its)[0])
    np.testing.assert_array_equal(model.fold_in([9, 5], [5, 1]), loaded.fold_in([9, 5], [5, 1]))
    again = ContentModel.from_state(model.config, state)
    np.testing.assert_array_equal(again._score_users(np.arange(6)), model._score_users(np.arange(6)))


# ----- (4) tags off or absent: exactly the old genre-only model --------------------------------
@pytest.mark.parametrize(
    ("params", "no_tags", "note"),
    [
        ({"use_tags": False}, False, "off (use_tags=false)"),
        ({"tag_weight": 0.0}, False, "off (tag_weight=0)"),
        ({"min_tag_count": 50}, False, "no tag on >= 50 items: genres only"),
        ({}, True, "none in dataset: genres only"),
        ({"shrink": 3.0, "reg_u": 5.0, "reg_i": 2.0}, True, "none in dataset: genres only"),
    ],
)
def test_without_tags_matches_old_genre_formula(data, params, no_tags, note):
    train = replace(data, tags_path=None) if no_tags else data
    model = fit(train, **params)
    assert model.fit_info["tags"] == note
    assert model.fit_info["tag_features"] == 0 and len(model.tag_names) == 0
    assert model.F.shape[1] == len(data.genre_names)
    c = model.config
    want = old_genre_scores(data, c.shrink, c.reg_u, c.reg_i)
    users = np.arange(data.n_users)
    np.testing.assert_allclose(model._score_users(users), want, rtol=1e-5, atol=1e-5)
    rated = np.flatnonzero(data.item_counts() > 0)
    uu, ii = np.meshgrid(users, rated, indexing="ij")
    pred, labels = model.predict(data.user_ids[uu.ravel()], data.item_ids[ii.ravel()])
    assert set(labels) == {None}
    np.testing.assert_allclose(pred, np.clip(want[uu, ii].ravel(), 0.5, 5.0), rtol=1e-5, atol=1e-5)


def test_duplicate_rating_rows_count_like_the_old_formula(data):
    # A repeated (user, item) row adds its residual to A and its features to B twice, as before.
    dup = replace(data, users=np.append(data.users, data.users[:2]), items=np.append(data.items, data.items[:2]),
                  ratings=np.append(data.ratings, np.float32([1.0, 4.5])), timestamps=None, _cache={})
    model = fit(dup, use_tags=False)
    assert len(model.seen_weight) == len(model.resid) and model.seen_weight.max() == 2
    np.testing.assert_allclose(model._score_users(np.arange(dup.n_users)), old_genre_scores(dup), rtol=1e-5, atol=1e-5)


# ----- (5) bad parameters -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_tags": 0}, "max_tags: 0 is below the minimum 1"),
        ({"tag_weight": -0.5}, "tag_weight: -0.5 is below the minimum 0.0"),
        ({"min_tag_count": "0"}, "min_tag_count: 0 is below the minimum 1"),
        ({"use_tags": "maybe"}, "use_tags: 'maybe' is not a valid bool"),
        ({"max_tag": 10}, "did you mean 'max_tags'"),
    ],
)
def test_bad_tag_params_name_the_valid_range(params, message):
    with pytest.raises(ConfigError, match=message):
        create_model("content", params)
