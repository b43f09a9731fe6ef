"""Tidy tables of ratings, items, time and tags: pure functions of polars frames in the processed layout.

Inputs are the frames of data/LAYOUT.md (ratings: user_id, item_id, rating, timestamp; items:
item_id, title, year, genres). Every function returns a polars DataFrame with one row per
plotted mark, so the figure, the JSON and the CSV export all show the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

DAMPING = 10.0  # pseudo-ratings at the global mean, the popularity model's default for damped_mean
COLD_START = (5, 20)  # "under 5 / under 20 ratings"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TENURE_BINS = ((0, 1, "same day"), (1, 8, "1-7 days"), (8, 31, "8-30 days"), (31, 91, "1-3 months"),
               (91, 366, "3-12 months"), (366, None, "over a year"))  # [low, high) in whole days
CURVE_POINTS = 300  # long-tail curves longer than this are sampled at log-spaced ranks


def gini(counts) -> float:
    """Gini coefficient of non-negative counts (0 = all equal, -> 1 = one entity has everything)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), float(x.sum()) if len(x) else 0.0
    if n == 0 or total == 0:
        return float("nan")
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * np.sum(ranks * x) / (n * total) - (n + 1) / n)


def top_share(counts, fraction: float) -> float:
    """Share of the total held by the top `fraction` of entities (at least one entity)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    if len(x) == 0 or x.sum() == 0:
        return float("nan")
    k = max(1, math.ceil(fraction * len(x)))
    return float(x[:k].sum() / x.sum())


def entity_counts(ratings: pl.DataFrame, items: pl.DataFrame | None = None) -> dict[str, np.ndarray]:
    """Ratings per user (users who rated) and per catalogue item (items.parquet plus rated items; 0 if unrated)."""
    users = ratings.group_by("user_id").len()["len"].to_numpy()
    per_item = ratings.group_by("item_id").len()
    if items is not None and len(items):
        catalogue = pl.concat([items.select("item_id"), per_item.select("item_id")]).unique()
        per_item = catalogue.join(per_item, on="item_id", how="left").with_columns(pl.col("len").fill_null(0))
    return {"user": users.astype(np.int64), "item": per_item["len"].to_numpy().astype(np.int64)}


def rating_distribution(ratings: pl.DataFrame) -> pl.DataFrame:
    """rating, ratings, share."""
    table = ratings.group_by("rating").len("ratings").sort("rating")
    return table.with_columns(share=pl.col("ratings") / pl.col("ratings").sum())


def concentration(counts: dict[str, np.ndarray]) -> pl.DataFrame:
    """Per entity (user, item): how many, Gini, top 1%/10% share of ratings, cold-start shares, median/mean/max."""
    rows = []
    for entity, x in counts.items():
        row = {"entity": entity, "n": len(x), "with_ratings": int((x > 0).sum()), "gini": gini(x),
               "top_1pct_share": top_share(x, 0.01), "top_10pct_share": top_share(x, 0.10)}
        for k in COLD_START:
            row[f"under_{k}_share"] = float((x < k).mean()) if len(x) else float("nan")
        row.update(median=float(np.median(x)) if len(x) else float("nan"),
                   mean=float(x.mean()) if len(x) else float("nan"), max=int(x.max()) if len(x) else 0)
        rows.append(row)
    return pl.DataFrame(rows)


def activity_histogram(counts: dict[str, np.ndarray]) -> pl.DataFrame:
    """entity, bin label, low, high, entities, ratings: power-of-two bins of ratings per entity (0 its own bin)."""
    rows = []
    for entity, x in counts.items():
        top = int(x.max()) if len(x) else 0
        edges = [(0, 0)] if (x == 0).any() else []
        low = 1
        while low <= top:
            edges.append((low, 2 * low - 1))
            low *= 2
        for lo, hi in edges:
            inside = (x >= lo) & (x <= hi)
            rows.append({"entity": entity, "bin": str(lo) if lo == hi else f"{lo}-{hi}", "low": lo, "high": hi,
                         "entities": int(inside.sum()), "ratings": int(x[inside].sum())})
    return pl.DataFrame(rows, schema={"entity": pl.String, "bin": pl.String, "low": pl.Int64, "high": pl.Int64,
                                      "entities": pl.Int64, "ratings": pl.Int64})


def long_tail(counts: dict[str, np.ndarray]) -> pl.DataFrame:
    """entity, rank (1 = most ratings), ratings, entity_share, cumulative_share: the concentration curve.

    Curves longer than CURVE_POINTS keep log-spaced ranks (always the first and the last).
    """
    frames = []
    for entity, x in counts.items():
        n = len(x)
        if n == 0:
            continue
        desc = np.sort(x)[::-1]
        cum = np.cumsum(desc) / max(desc.sum(), 1)
        ranks = np.arange(1, n + 1)
        if n > CURVE_POINTS:
            ranks = np.unique(np.round(np.geomspace(1, n, CURVE_POINTS)).astype(np.int64))
        frames.append(pl.DataFrame({"entity": entity, "rank": ranks, "ratings": desc[ranks - 1],
                                    "entity_share": ranks / n, "cumulative_share": cum[ranks - 1]}))
    return pl.concat(frames) if frames else pl.DataFrame()


def item_stats(ratings: pl.DataFrame, items: pl.DataFrame, damping: float = DAMPING) -> pl.DataFrame:
    """item_id, title, year, ratings, mean_rating, damped_mean ((sum + damping * global mean) / (n + damping))."""
    mu = float(ratings["rating"].cast(pl.Float64).mean())
    per = ratings.group_by("item_id").agg(ratings=pl.len(), _sum=pl.col("rating").cast(pl.Float64).sum())
    per = per.with_columns(mean_rating=pl.col("_sum") / pl.col("ratings"),
                           damped_mean=(pl.col("_sum") + damping * mu) / (pl.col("ratings") + damping)).drop("_sum")
    meta = items.select("item_id", "title", *(["year"] if "year" in items.columns else []))
    return per.join(meta, on="item_id", how="left").select("item_id", "title", *(["year"] if "year" in items.columns else []),
                                                           "ratings", "mean_rating", "damped_mean")


def top_items(stats: pl.DataFrame, by: str, n: int = 20) -> pl.DataFrame:
    """The n items with the most ratings (by="ratings") or the best damped mean, ties by item id; rank first."""
    table = stats.sort([by, "item_id"], descending=[True, False]).head(n)
    return table.with_row_index("rank", offset=1).with_columns(pl.col("rank").cast(pl.Int64))


def _item_genres(items: pl.DataFrame) -> pl.DataFrame:
    return items.select("item_id", "genres").explode("genres").drop_nulls("genres").rename({"genres": "genre"})


def genre_table(ratings: pl.DataFrame, items: pl.DataFrame, z: float = 1.959964) -> pl.DataFrame:
    """genre, items, rated_items, ratings, share_of_ratings, mean_rating, sd, ci_low, ci_high; most-rated first.

    A movie counts for each of its genres, so shares add up to more than 1. The interval is
    the normal one for a mean over ratings taken as independent (descriptive, not a test).
    """
    ig = _item_genres(items)
    if ig.is_empty():
        return pl.DataFrame(schema={"genre": pl.String, "items": pl.Int64, "rated_items": pl.Int64, "ratings": pl.Int64,
                                    "share_of_ratings": pl.Float64, "mean_rating": pl.Float64, "sd": pl.Float64,
                                    "ci_low": pl.Float64, "ci_high": pl.Float64})
    n_items = ig.group_by("genre").agg(items=pl.len())
    # Sums per item first, then per genre: a join of items x genres instead of ratings x genres.
    r = pl.col("rating").cast(pl.Float64)
    per_item = ratings.group_by("item_id").agg(n=pl.len().cast(pl.Int64), s=r.sum(), ss=(r * r).sum())
    total = len(ratings)
    per = per_item.join(ig, on="item_id").group_by("genre").agg(
        rated_items=pl.len(), ratings=pl.col("n").sum(), _s=pl.col("s").sum(), _ss=pl.col("ss").sum())
    per = per.with_columns(mean_rating=pl.col("_s") / pl.col("ratings"))
    per = per.with_columns(sd=((pl.col("_ss") - pl.col("_s") * pl.col("mean_rating")) / (pl.col("ratings") - 1))
                           .clip(lower_bound=0.0).sqrt()).drop("_s", "_ss")
    table = n_items.join(per, on="genre", how="left").with_columns(
        pl.col("rated_items").fill_null(0), pl.col("ratings").fill_null(0).cast(pl.Int64), pl.col("items").cast(pl.Int64),
    )
    half = z * pl.col("sd") / pl.col("ratings").cast(pl.Float64).sqrt()
    table = table.with_columns(share_of_ratings=pl.col("ratings") / total if total else pl.lit(None, pl.Float64))
    table = table.with_columns(ci_low=pl.col("mean_rating") - half, ci_high=pl.col("mean_rating") + half)
    return table.select("genre", "items", "rated_items", pl.col("ratings").cast(pl.Int64), "share_of_ratings",
                        "mean_rating", "sd", "ci_low", "ci_high").sort(["ratings", "genre"], descending=[True, False])


def genre_cooccurrence(items: pl.DataFrame, order: list[str] | None = None) -> pl.DataFrame:
    """genre_a, genre_b, items_a, items_ab, p_b_given_a: P(movie has B | it has A), over the catalogue."""
    ig = _item_genres(items)
    genres = order or sorted(ig["genre"].unique().to_list())
    if not genres:
        return pl.DataFrame(schema={"genre_a": pl.String, "genre_b": pl.String, "items_a": pl.Int64,
                                    "items_ab": pl.Int64, "p_b_given_a": pl.Float64})
    g_index = {g: k for k, g in enumerate(genres)}
    ig = ig.filter(pl.col("genre").is_in(genres))
    item_codes, item_rows = np.unique(ig["item_id"].to_numpy(), return_inverse=True)
    m = np.zeros((len(item_codes), len(genres)), dtype=np.int64)
    m[item_rows, [g_index[g] for g in ig["genre"].to_list()]] = 1
    both = m.T @ m
    n_a = np.diag(both)
    a_idx, b_idx = np.meshgrid(np.arange(len(genres)), np.arange(len(genres)), indexing="ij")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n_a[:, None] > 0, both / n_a[:, None], np.nan)
    return pl.DataFrame({
        "genre_a": [genres[k] for k in a_idx.ravel()], "genre_b": [genres[k] for k in b_idx.ravel()],
        "items_a": n_a[a_idx.ravel()], "items_ab": both.ravel(), "p_b_given_a": p.ravel(),
    })


def release_years(ratings: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """year, items, ratings, mean_rating for every release year (items without a year left out)."""
    if "year" not in items.columns:
        return pl.DataFrame(schema={"year": pl.Int64, "items": pl.Int64, "ratings": pl.Int64, "mean_rating": pl.Float64})
    dated = items.select("item_id", pl.col("year").cast(pl.Int64)).drop_nulls("year")
    n_items = dated.group_by("year").agg(items=pl.len())
    rated = ratings.select("item_id", "rating").join(dated, on="item_id").group_by("year").agg(
        ratings=pl.len(), mean_rating=pl.col("rating").cast(pl.Float64).mean())
    return n_items.join(rated, on="year", how="left").with_columns(
        pl.col("items").cast(pl.Int64), pl.col("ratings").fill_null(0).cast(pl.Int64)).sort("year")


def has_timestamps(ratings: pl.DataFrame) -> bool:
    """A release without timestamps is stored with timestamp 0 everywhere."""
    return len(ratings) > 0 and int(ratings["timestamp"].max()) > 0


def _times(ratings: pl.DataFrame) -> pl.DataFrame:
    return ratings.with_columns(_t=pl.from_epoch("timestamp", time_unit="s"))


def monthly(ratings: pl.DataFrame) -> pl.DataFrame:
    """month (YYYY-MM, UTC), ratings, mean_rating, new_users (users whose first rating falls in the month)."""
    t = _times(ratings).with_columns(month=pl.col("_t").dt.strftime("%Y-%m"))
    per = t.group_by("month").agg(ratings=pl.len(), mean_rating=pl.col("rating").cast(pl.Float64).mean())
    first = t.group_by("user_id").agg(pl.col("_t").min()).with_columns(month=pl.col("_t").dt.strftime("%Y-%m"))
    new = first.group_by("month").agg(new_users=pl.len())
    lo, hi = t["_t"].min(), t["_t"].max()
    months = pl.date_range(lo.date().replace(day=1), hi.date().replace(day=1), "1mo", eager=True).dt.strftime("%Y-%m")
    table = pl.DataFrame({"month": months}).join(per, on="month", how="left").join(new, on="month", how="left")
    return table.with_columns(pl.col("ratings").fill_null(0).cast(pl.Int64), pl.col("new_users").fill_null(0).cast(pl.Int64))


def weekday_hour(ratings: pl.DataFrame) -> pl.DataFrame:
    """weekday (1 = Monday), day, hour (UTC), ratings: all 7 x 24 cells, zeros included."""
    t = _times(ratings).select(weekday=pl.col("_t").dt.weekday().cast(pl.Int64), hour=pl.col("_t").dt.hour().cast(pl.Int64))
    counts = t.group_by("weekday", "hour").len("ratings")
    grid = pl.DataFrame({"weekday": np.repeat(np.arange(1, 8), 24), "hour": np.tile(np.arange(24), 7)})
    table = grid.join(counts, on=["weekday", "hour"], how="left").with_columns(pl.col("ratings").fill_null(0).cast(pl.Int64))
    return table.with_columns(day=pl.col("weekday").replace_strict(dict(enumerate(WEEKDAYS, 1)), return_dtype=pl.String)
                              ).select("weekday", "day", "hour", "ratings").sort("weekday", "hour")


def user_tenure(ratings: pl.DataFrame) -> pl.DataFrame:
    """bin, low_days, high_days (exclusive; null = open), users, share: days from a user's first to last rating."""
    span = ratings.group_by("user_id").agg(days=(pl.col("timestamp").max() - pl.col("timestamp").min()) // 86400)
    days = span["days"].to_numpy()
    rows = []
    for lo, hi, label in TENURE_BINS:
        inside = (days >= lo) & (days < hi) if hi is not None else days >= lo
        rows.append({"bin": label, "low_days": lo, "high_days": hi, "users": int(inside.sum()),
                     "share": float(inside.mean()) if len(days) else float("nan")})
    return pl.DataFrame(rows, schema={"bin": pl.String, "low_days": pl.Int64, "high_days": pl.Int64,
                                      "users": pl.Int64, "share": pl.Float64})


def normalise_tags(tags: pl.DataFrame) -> pl.DataFrame:
    """Tags lower-cased with whitespace collapsed; empty tags dropped."""
    clean = tags.with_columns(tag=pl.col("tag").cast(pl.String).str.to_lowercase().str.strip_chars()
                              .str.replace_all(r"\s+", " "))
    return clean.filter(pl.col("tag").str.len_chars() > 0)


def top_tags(tags: pl.DataFrame, n: int = 20) -> pl.DataFrame:
    """rank, tag, applications, items, users: the most applied (normalised) tags, ties by tag."""
    per = normalise_tags(tags).group_by("tag").agg(applications=pl.len(), items=pl.col("item_id").n_unique(),
                                                   users=pl.col("user_id").n_unique())
    per = per.sort(["applications", "tag"], descending=[True, False]).head(n)
    return per.with_row_index("rank", offset=1).with_columns(pl.col("rank").cast(pl.Int64), pl.col("applications").cast(pl.Int64),
                                                             pl.col("items").cast(pl.Int64), pl.col("users").cast(pl.Int64))


def tags_by_genre(tags: pl.DataFrame, items: pl.DataFrame, n: int = 5) -> pl.DataFrame:
    """genre, rank, tag, applications: each genre's n most applied tags (on movies of that genre)."""
    joined = normalise_tags(tags).join(_item_genres(items), on="item_id")
    per = joined.group_by("genre", "tag").agg(applications=pl.len().cast(pl.Int64))
    per = per.sort(["genre", "applications", "tag"], descending=[False, True, False])
    per = per.with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("genre"))
    return per.filter(pl.col("rank") <= n).select("genre", "rank", "tag", "applications")
