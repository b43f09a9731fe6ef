"""hybrid-als: kernel vs reference, and cold-start quality on planted genre structure."""

import numpy as np

from recsys_cli.data.dataset import Interactions
from recsys_cli.models._kernels.hybrid import hybrid_item_step, hybrid_item_step_ref
from recsys_cli.models.registry import create_model


def test_item_step_matches_reference():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 30, 12, 4
    mask = rng.random((n_users, n_items)) < 0.3
    mask[:, 5] = False  # an item with no ratings: solved from its prior alone
    users, items = np.nonzero(mask)
    order = np.lexsort((users, items))
    users, items = users[order], items[order]
    ratings = rng.integers(1, 6, len(users)).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(items, minlength=n_items))]).astype(np.int64)
    X = rng.normal(size=(n_users, k)).astype(np.float32)
    bu = rng.normal(size=n_users).astype(np.float32)
    M = rng.normal(size=(n_items, k)).astype(np.float32)
    MB = rng.normal(size=n_items).astype(np.float32)
    for scale in (True, False):
        V1, V2 = np.zeros((n_items, k), np.float32), np.zeros((n_items, k), np.float32)
        b1, b2 = np.zeros(n_items, np.float32), np.zeros(n_items, np.float32)
        hybrid_item_step(indptr, users.astype(np.int32), ratings, X, bu, 3.0, V1, b1, M, MB, 0.1, 0.05, 2.0, 0.5, scale)
        hybrid_item_step_ref(indptr, users.astype(np.int32), ratings, X, bu, 3.0, V2, b2, M, MB, 0.1, 0.05, 2.0, 0.5, scale)
        np.testing.assert_allclose(V1, V2, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b1, b2, rtol=1e-4, atol=1e-5)
    # the unrated item sits at its prior, shrunk by tau / (tau + reg) without count scaling
    np.testing.assert_allclose(V1[5], M[5] * 2.0 / (2.0 + 0.1), rtol=1e-5)
    np.testing.assert_allclose(b1[5], MB[5] * 0.5 / (0.5 + 0.05), rtol=1e-5)  # and its bias at the genre bias


def planted(seed=1):
    """Items belong to one of 4 genres whose centroids drive the ratings; 12 items are never rated."""
    rng = np.random.default_rng(seed)
    n_users, n_items, k, n_genres = 300, 120, 4, 4
    centroids = rng.normal(0, 1.0, (n_genres, k))
    genre = np.arange(n_items) % n_genres
    V = centroids[genre] + rng.normal(0, 0.15, (n_items, k))
    U = rng.normal(0, 0.6, (n_users, k))
    truth = 3.4 + U @ V.T
    cold = np.arange(n_items - 12, n_items)
    mask = rng.random((n_users, n_items)) < 0.25
    users, items = np.nonzero(mask)
    r = np.clip(np.round(truth[users, items] + rng.normal(0, 0.3, len(users)) * 2) / 2, 0.5, 5).astype(np.float32)
    G = np.zeros((n_items, n_genres), np.float32)
    G[np.arange(n_items), genre] = 1
    data = Interactions(users=users.astype(np.int32), items=items.astype(np.int32), ratings=r,
                        user_ids=np.arange(1, n_users + 1), item_ids=np.arange(1, n_items + 1), rating_scale=(0.5, 5.0),
                        item_genres=G, genre_names=("a", "b", "c", "d"))
    train = data.subset(~np.isin(items, cold))
    test = data.subset(np.isin(items, cold))
    return train, test, truth, genre, cold


def test_cold_items_predicted_from_genres_beat_user_bias():
    train, test, truth, genre, cold = planted()
    model = create_model("hybrid-als", {"factors": 4, "iterations": 15}).fit(train, seed=0)
    pred, labels = model.predict(test.user_ids[test.users], test.item_ids[test.items])
    assert set(labels) == {"genre"}
    rmse = np.sqrt(np.mean((pred - test.ratings) ** 2))
    base = create_model("svd", {"factors": 4, "epochs": 20}).fit(train, seed=0)
    fb_pred, fb_labels = base.predict(test.user_ids[test.users], test.item_ids[test.items])
    assert set(fb_labels) == {"user_bias"}
    fb_rmse = np.sqrt(np.mean((fb_pred - test.ratings) ** 2))
    assert rmse < 0.8 * fb_rmse, (rmse, fb_rmse)


def test_cold_items_reach_top_n_of_users_who_love_their_genre():
    train, test, truth, genre, cold = planted()
    model = create_model("hybrid-als", {"factors": 4, "iterations": 15}).fit(train, seed=0)
    genre_means = np.stack([truth[:, genre == h].mean(axis=1) for h in range(4)], axis=1)
    g = genre[cold[0]]
    fans = np.flatnonzero((genre_means.argmax(axis=1) == g) & (genre_means.max(axis=1) > genre_means.mean() + 0.8))
    haters = np.flatnonzero(genre_means.argmin(axis=1) == g)
    assert len(fans) >= 10 and len(haters) >= 10
    cold_of_g = train.item_ids[cold[genre[cold] == g]]
    # Each genre has ~20 unseen rated items competing with 3 cold ones: look at the top 20.
    fan_hits = np.isin(model.recommend(train.user_ids[fans], 20).items, cold_of_g).any(axis=1).mean()
    hater_hits = np.isin(model.recommend(train.user_ids[haters], 20).items, cold_of_g).any(axis=1).mean()
    assert fan_hits > 0.8, fan_hits
    assert hater_hits < 0.1, hater_hits
