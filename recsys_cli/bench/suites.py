"""`--suite polars500k`: a data-frame workload of 500k interactions, with Polars and our kernels.

Tasks, each timed like every benchmark step (warm-up on a small input, then the median of the
repeats):

- generate: 500k synthetic interactions in memory (Zipf item popularity, user/item biases,
  1-5 stars, 1-3 genres per item) as Polars frames;
- aggregations: per-user and per-item rating counts and means (group_by);
- join + filter: ratings joined with items, kept where the genre list holds Drama and rating >= 4;
- user-item matrix: scipy CSR of the ratings;
- item similarity: cosine top-20 neighbours of every item (our k-NN kernel);
- batch prediction: a trained SVD predicting 100k (user, item) pairs (the fit is shown apart).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_cli.bench.measure import measure

SUITES = ("polars500k",)
SUITE_RATINGS = 500_000
GENRES = ("Action", "Comedy", "Drama", "Romance", "Thriller", "Horror", "Sci-Fi", "Animation")
PAIRS = 100_000
NEIGHBOURS = 20


def make_frames(n: int, seed: int = 42):
    """(ratings, items) Polars frames: n distinct (user, item) ratings, ids 1..n_users / 1..n_items."""
    import polars as pl

    rng = np.random.default_rng(seed)
    n_users, n_items = max(100, n // 50), max(200, n // 250)
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    popularity /= popularity.sum()
    frame, draw = None, int(n * 1.3) + 100
    while frame is None or frame.height < n:  # draw until n distinct pairs exist
        batch = pl.DataFrame({
            "user_id": rng.integers(1, n_users + 1, draw, dtype=np.int32),
            "item_id": (rng.choice(n_items, draw, p=popularity) + 1).astype(np.int32),
        })
        frame = batch if frame is None else pl.concat([frame, batch])
        frame = frame.unique(subset=["user_id", "item_id"], keep="first", maintain_order=True)
        draw = 2 * (n - frame.height) + 100
    frame = frame.head(n)
    ub = rng.normal(0, 0.4, n_users + 1).astype(np.float32)
    ib = rng.normal(0, 0.5, n_items + 1).astype(np.float32)
    u, i = frame["user_id"].to_numpy(), frame["item_id"].to_numpy()
    stars = np.clip(np.rint(3.5 + ub[u] + ib[i] + rng.normal(0, 0.9, len(u))), 1, 5).astype(np.float32)
    ratings = frame.with_columns(
        rating=pl.Series(stars),
        timestamp=pl.Series(rng.integers(946_684_800, 1_577_836_800, len(u), dtype=np.int64)),
    )
    k = rng.integers(1, 4, n_items)
    genre_lists = [sorted(set(rng.choice(GENRES, int(c)).tolist())) for c in k]
    items = pl.DataFrame({
        "item_id": np.arange(1, n_items + 1, dtype=np.int32),
        "title": [f"Movie {j}" for j in range(1, n_items + 1)],
        "genres": genre_lists,
    })
    return ratings, items


def aggregations(ratings):
    import polars as pl

    stats = [pl.len().alias("n"), pl.col("rating").mean().alias("mean")]
    return ratings.group_by("user_id").agg(stats), ratings.group_by("item_id").agg(stats)


def join_filter(ratings, items):
    import polars as pl

    return ratings.join(items, on="item_id").filter(
        pl.col("genres").list.contains("Drama") & (pl.col("rating") >= 4)
    )


def user_item_matrix(ratings, n_users: int, n_items: int):
    import scipy.sparse as sp

    u = ratings["user_id"].to_numpy() - 1
    i = ratings["item_id"].to_numpy() - 1
    m = sp.csr_matrix((ratings["rating"].to_numpy(), (u, i)), shape=(n_users, n_items), dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    return m


def item_similarity(matrix, threads: int | None):
    from recsys_cli.models._kernels.knn import topk_similarities

    items = matrix.T.tocsr()
    items.sort_indices()
    return topk_similarities(items.indptr, items.indices, items.data, matrix.shape[0], kind="cosine",
                             k_max=NEIGHBOURS, n_threads=threads)


def _interactions(ratings, n_users: int, n_items: int):
    from recsys_cli.data.dataset import Interactions

    return Interactions(
        users=(ratings["user_id"].to_numpy() - 1).astype(np.int32),
        items=(ratings["item_id"].to_numpy() - 1).astype(np.int32),
        ratings=ratings["rating"].to_numpy().astype(np.float32),
        user_ids=np.arange(1, n_users + 1, dtype=np.int64),
        item_ids=np.arange(1, n_items + 1, dtype=np.int64),
        rating_scale=(1.0, 5.0),
    )


def run_suite(name: str = "polars500k", *, n_ratings: int = SUITE_RATINGS, repeat: int = 3,
              threads: int | None = None, seed: int = 42) -> dict[str, Any]:
    """Run a named suite; returns {"machine", "suite", "scale", "rows", "notes"}."""
    from recsys_cli.bench.machine import PeakRSS, machine_info
    from recsys_cli.errors import UsageError
    from recsys_cli.models.registry import create_model
    from recsys_cli.runtime import compute_threads

    if name not in SUITES:
        raise UsageError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")
    rows: list[dict[str, Any]] = []

    def add(task: str, m, detail: str) -> None:
        rows.append({"task": task, "seconds": round(m.seconds, 6),
                     "compile_seconds": None if m.compile_seconds is None else round(m.compile_seconds, 6),
                     "peak_rss_mb": None if m.peak_rss_mb is None else round(m.peak_rss_mb, 1), "detail": detail})

    with compute_threads(threads) as n_threads:
        m = measure(lambda: make_frames(n_ratings, seed), repeat=repeat, warmup=lambda: make_frames(2000, seed))
        ratings, items = m.result
        n_users, n_items = int(ratings["user_id"].max()), items.height
        add("generate", m, f"{ratings.height:,} ratings, {n_users:,} users, {n_items:,} items, in memory")
        small = ratings.head(2000)
        m = measure(lambda: aggregations(ratings), repeat=repeat, warmup=lambda: aggregations(small))
        add("aggregations", m, f"count + mean for {m.result[0].height:,} users and {m.result[1].height:,} items")
        m = measure(lambda: join_filter(ratings, items), repeat=repeat, warmup=lambda: join_filter(small, items))
        add("join + filter", m, f"{m.result.height:,} Drama ratings >= 4 after joining items")
        m = measure(lambda: user_item_matrix(ratings, n_users, n_items), repeat=repeat,
                    warmup=lambda: user_item_matrix(small, n_users, n_items))
        matrix = m.result
        add("user-item matrix", m, f"scipy CSR {n_users:,} x {n_items:,}, {matrix.nnz:,} non-zeros")
        m = measure(lambda: item_similarity(matrix, n_threads), repeat=repeat,
                    warmup=lambda: item_similarity(user_item_matrix(small, n_users, n_items), n_threads))
        add("item similarity", m, f"cosine top-{NEIGHBOURS} of {n_items:,} items (Numba kernel, {n_threads} threads)")
        data = _interactions(ratings, n_users, n_items)
        m = measure(lambda: create_model("svd").fit(data, seed=seed), repeat=1,
                    warmup=lambda: create_model("svd").fit(data.subset(np.arange(2000)), seed=seed))
        model = m.result
        add("svd fit", m, f"svd defaults ({model.config.factors} factors, {model.config.epochs} epochs)")
        rng = np.random.default_rng(seed)
        pu = rng.integers(1, n_users + 1, PAIRS)
        pi = rng.integers(1, n_items + 1, PAIRS)
        m = measure(lambda: model.predict(pu, pi), repeat=repeat, warmup=lambda: model.predict(pu[:100], pi[:100]))
        add("batch prediction", m, f"{PAIRS:,} (user, item) pairs with the trained SVD")
    notes = ["seconds: median of the repeats after a warm-up on a small input"]
    return {
        "machine": machine_info(), "suite": name, "scale": n_ratings,
        "settings": {"repeat": repeat, "threads": n_threads, "seed": seed, "memory": PeakRSS.method()},
        "rows": rows, "notes": notes,
    }
