"""Run every insight the dataset supports: `compute_insights(load_frames(load_dataset(name)))`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recsys_cli.errors import DataError


@dataclass(frozen=True)
class Frames:
    """The processed dataset's tables (users and tags only where the release has them)."""

    name: str
    ratings: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None = None
    tags: pl.DataFrame | None = None


@dataclass
class Insights:
    """Key numbers, every tidy table (name -> DataFrame) and the supported segment statements."""

    dataset: str  # the dataset's name, or the run's for a model report (subject "run")
    summary: dict
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    statements: list[str] = field(default_factory=list)
    subject: str = "dataset"

    def to_dict(self) -> dict:
        return {self.subject: self.dataset, "summary": self.summary, "statements": self.statements,
                "tables": {name: table.to_dicts() for name, table in self.tables.items()}}


def load_frames(dataset) -> Frames:
    """Read a processed `Dataset`'s Parquet files (see data/LAYOUT.md)."""
    path = Path(dataset.path)

    def read(name: str, columns=None):
        try:
            return pl.read_parquet(path / name, columns=columns)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise DataError(f"cannot read {path / name}: {exc}") from exc

    ratings = read("ratings.parquet", ["user_id", "item_id", "rating", "timestamp"])
    items = read("items.parquet")
    users = read("users.parquet") if dataset.meta.get("has_users") and (path / "users.parquet").exists() else None
    tags = read("tags.parquet") if dataset.meta.get("has_tags") and (path / "tags.parquet").exists() else None
    return Frames(dataset.name, ratings, items, users, tags)


def compute_insights(frames: Frames, *, alpha: float = 0.05, top: int = 20) -> Insights:
    """Every table the frames support (time tables need timestamps, segments demographics, tags tags)."""
    from recsys_cli.insights import segments as sg
    from recsys_cli.insights import tables as tb

    ratings, items = frames.ratings, frames.items
    if ratings.is_empty():
        raise DataError(f"dataset {frames.name!r} has no ratings")
    counts = tb.entity_counts(ratings, items)
    conc = tb.concentration(counts)
    stats = tb.item_stats(ratings, items)
    genres = tb.genre_table(ratings, items)
    out: dict[str, pl.DataFrame] = {
        "rating_distribution": tb.rating_distribution(ratings),
        "concentration": conc,
        "activity": tb.activity_histogram(counts),
        "long_tail": tb.long_tail(counts),
        "top_items_by_count": tb.top_items(stats, "ratings", top),
        "top_items_by_damped_mean": tb.top_items(stats, "damped_mean", top),
        "genres": genres,
        "genre_cooccurrence": tb.genre_cooccurrence(items, genres["genre"].to_list() or None),
        "release_years": tb.release_years(ratings, items),
    }
    n_users, n_items = len(counts["user"]), len(counts["item"])
    c = {row["entity"]: row for row in conc.iter_rows(named=True)}
    summary = {
        "ratings": len(ratings), "users": n_users, "items": n_items, "rated_items": int((counts["item"] > 0).sum()),
        "sparsity": 1.0 - len(ratings) / (n_users * n_items), "mean_rating": float(ratings["rating"].cast(pl.Float64).mean()),
        "gini_items": c["item"]["gini"], "gini_users": c["user"]["gini"],
        "top_1pct_items_share": c["item"]["top_1pct_share"], "top_10pct_items_share": c["item"]["top_10pct_share"],
        **{f"{e}s_under_{k}_share": c[e][f"under_{k}_share"] for e in ("user", "item") for k in tb.COLD_START},
        "has_timestamps": tb.has_timestamps(ratings), "has_demographics": frames.users is not None,
        "has_tags": frames.tags is not None,
    }
    if summary["has_timestamps"]:
        out["monthly"] = tb.monthly(ratings)
        out["weekday_hour"] = tb.weekday_hour(ratings)
        out["user_tenure"] = tb.user_tenure(ratings)
        first, last = ratings["timestamp"].min(), ratings["timestamp"].max()
        summary["first_rating"] = pl.from_epoch(pl.Series([first, last]), time_unit="s").dt.strftime("%Y-%m-%d").to_list()[0]
        summary["last_rating"] = pl.from_epoch(pl.Series([last]), time_unit="s").dt.strftime("%Y-%m-%d").to_list()[0]
    statements: list[str] = []
    if frames.users is not None and not genres.is_empty():
        lift = sg.segment_lift(ratings, items, frames.users, alpha=alpha)
        out["segment_lift"] = lift
        statements = sg.statements(lift, alpha)
        summary["segment_tests"] = int(lift["p_value"].is_not_null().sum())
        summary["segment_findings"] = len(statements)
    if frames.tags is not None and not frames.tags.is_empty():
        out["top_tags"] = tb.top_tags(frames.tags, top)
        out["tags_by_genre"] = tb.tags_by_genre(frames.tags, items)
    summary["alpha"] = alpha
    return Insights(frames.name, summary, out, statements)
