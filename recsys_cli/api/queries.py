"""Questions to a saved run, answered as result objects every face emits alike (CLI, HTTP server).

`recommend`, `predict` and `similar` take a `Run` (or a run's name) and return results with
`.rows()` (the JSON rows of `recsys recommend/predict/similar`), `.to_frame()` and `.to_dict()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys_cli.errors import UsageError

if TYPE_CHECKING:
    import polars as pl

    from recsys_cli.api.runs import Run
    from recsys_cli.models.base import RecList


def _run(run: Any, artifacts_dir=None, what: str = "load_run") -> Run:
    from recsys_cli.api.runs import Run, load_run, run_name_of

    return run if isinstance(run, Run) else load_run(run_name_of(run, what), artifacts_dir=artifacts_dir)


@dataclass
class Recommendations:
    """Top-n lists for users (or one new user's fold-in), raw ids, with titles."""

    recs: RecList
    titles: dict[int, str]
    n: int
    run: str | None = None
    new_user: bool = False
    reasons: list[list[dict[str, Any]]] | None = None  # with explain=True: per (user, rank), in rows() order

    @property
    def short(self) -> int:
        """Users who got fewer than n items (the catalogue had no more eligible items)."""
        return int(((self.recs.items >= 0).sum(axis=1) < self.n).sum())

    @property
    def unknown(self) -> int:
        """Users the run does not know, who got the popularity ranking."""
        return sum(1 for fb in self.recs.fallback if fb == "popularity")

    def notes(self) -> list[str]:
        """One line per thing a person should know about these lists."""
        out = []
        if self.short:
            out.append(f"warning: {self.short} user(s) got fewer than {self.n} items: "
                       "the catalogue has no more eligible items")
        if self.unknown:
            out.append(f"note: {self.unknown} unknown user(s) got the popularity ranking (fallback: popularity)")
        return out

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per (user, rank): user_id, rank, item_id, title, score[, fallback][, reasons]."""
        if self.reasons is None:
            return self.recs.rows(self.titles)
        return ({**row, "reasons": why} for row, why in zip(self.recs.rows(self.titles), self.reasons, strict=True))

    def to_dict(self) -> list[dict[str, Any]]:
        return list(self.rows())

    def to_frame(self) -> pl.DataFrame:
        from recsys_cli.api.model import reclist_frame

        return reclist_frame(self.recs, self.titles, new_user=self.new_user, reasons=self.reasons)


def recommend(run: Any, users: Any = None, *, n: int = 10, exclude_seen: bool = True, ratings: Any = None,
              all_users: bool = False, items: Any = None, explain: bool = False, top_reasons: int = 3,
              artifacts_dir=None, data_dir=None, batch_size: int | None = None) -> Recommendations:
    """Top-n for raw user ids, for every user the run knows (all_users=True), or for a new user's `ratings`.

    explain=True adds `reasons` to every row: the parts of its score (rated items, genres, baseline,
    residual, popular fallback) that add up to it; see `api.model.Recommender.reasons`. A factor
    model reads the user's training ratings from the processed dataset (data_dir). batch_size: users scored
    at once (see `Recommender.top_n`).
    """
    r = _run(run, artifacts_dir, "recommend")
    chosen = sum([users is not None, bool(all_users), ratings is not None])
    if chosen != 1:
        raise UsageError("give exactly one of users, all_users or ratings")
    model = r.model
    if ratings is not None:
        recs = model.fold_in_list(ratings, n, exclude_seen=exclude_seen, items=items)
        why = model.reasons(recs, new_user_ratings=ratings, top=top_reasons) if explain else None
        return Recommendations(recs, model.titles, n, run=r.name, new_user=True, reasons=why)
    recs = model.top_n(None if all_users else users, n, exclude_seen=exclude_seen, items=items, batch_size=batch_size)
    why = model.reasons(recs, top=top_reasons, data_dir=data_dir) if explain else None
    return Recommendations(recs, model.titles, n, run=r.name, reasons=why)


@dataclass
class Predictions:
    users: np.ndarray
    items: np.ndarray
    predictions: np.ndarray
    fallback: list[str | None] = field(default_factory=list)
    run: str | None = None
    time_ignored: bool = False  # timestamps were given to a model without a time part

    def rows(self) -> Iterator[dict[str, Any]]:
        for u, i, p, fb in zip(self.users.tolist(), self.items.tolist(), self.predictions.tolist(), self.fallback,
                               strict=True):
            yield {"user_id": u, "item_id": i, "prediction": float(p), "fallback": fb}

    def to_dict(self) -> list[dict[str, Any]]:
        return list(self.rows())

    def to_frame(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame({"user_id": self.users, "item_id": self.items, "prediction": self.predictions,
                             "fallback": self.fallback},
                            schema={"user_id": pl.Int64, "item_id": pl.Int64, "prediction": pl.Float64,
                                    "fallback": pl.String})


def predict(run: Any, users: Any, items: Any, *, timestamps: Any = None, artifacts_dir=None) -> Predictions:
    """Predicted ratings for (user, item) pairs of raw ids, each with its fallback label (None = the model);
    `timestamps` (Unix seconds): when each rating is made, for a model with a time part."""
    r = _run(run, artifacts_dir, "predict")
    u, i, pred, labels = r.model.predict_pairs(users, items, timestamps)  # no DataFrame: a server calls this
    ignored = timestamps is not None and not r.model._fitted().uses_time
    return Predictions(u, i, pred, labels, run=r.name, time_ignored=ignored)


@dataclass
class Similar:
    item: int
    items: np.ndarray
    similarities: np.ndarray
    titles: dict[int, str]
    run: str | None = None

    def rows(self) -> Iterator[dict[str, Any]]:
        for k, (j, s) in enumerate(zip(self.items.tolist(), self.similarities.tolist(), strict=True)):
            yield {"item_id": self.item, "rank": k + 1, "similar_item_id": int(j), "title": self.titles.get(int(j)),
                   "similarity": float(s)}

    def to_dict(self) -> list[dict[str, Any]]:
        return list(self.rows())

    def to_frame(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(self.to_dict(), schema={"item_id": pl.Int64, "rank": pl.Int32, "similar_item_id": pl.Int64,
                                                    "title": pl.String, "similarity": pl.Float64})


def similar(run: Any, item: Any, *, n: int = 10, artifacts_dir=None) -> Similar:
    """The n items most similar to `item` by the run's own item similarity."""
    from recsys_cli.api.model import _ids, check_n

    r = _run(run, artifacts_dir, "similar")
    raw = _ids(item, "item")
    if raw.size != 1:
        raise UsageError("give one item id")
    items, sims = r.model._fitted().similar_items(int(raw[0]), check_n(n))
    return Similar(int(raw[0]), items, sims, r.model.titles, run=r.name)


def model_report(run: Any, *, k: int = 10, relevance: str | None = None, threshold: float = 4.0,
                 projection: str = "pca", seed: int = 42, data_dir=None, artifacts_dir=None):
    """The model report of `recsys insights RUN` (an `Insights`: summary, tables, notes; see insights.model_report).

    Learning curve, hyperparameters and metrics, the item-factor map with its genre silhouette
    (projection: pca, tsne or umap; seeded by `seed`), coverage / novelty / popularity bias /
    diversity over every user's top-k, nDCG@k per segment.
    """
    from recsys_cli.api.model import check_seed
    from recsys_cli.insights.model_report import model_report as build

    seed = check_seed(seed)
    name = run if isinstance(run, str) else _run(run, artifacts_dir).name
    root = artifacts_dir if isinstance(run, str) or artifacts_dir is not None else _run(run).store.root
    return build(name, k=k, relevance=relevance, threshold=threshold, seed=seed, projection=projection,
                 data_dir=data_dir, artifacts_dir=root)
