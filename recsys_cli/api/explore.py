"""Views for exploring data and runs: dataset insights with their figures, the latent-space map of a
run's items, the runs leaderboard from the ledger, and the A/B chart's tables. Used by the dashboard
(`recsys serve --ui`) and usable from a notebook:

    ins = rs.api.explore.dataset_insights("ml-100k")
    svg = rs.api.explore.insight_figure_svg(ins, "genre_popularity")
    m = rs.api.explore.item_map("svd-ml-100k-random")          # 2-D PCA of the item vectors
    m = rs.api.explore.item_map("svd-ml-100k-random", projection="tsne", seed=1)   # needs the maps extra
    board = rs.api.explore.leaderboard(metric="rmse")
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_cli.errors import UnknownIdError, UsageError

MAP_POINTS = 5000  # at most this many items on the map (evenly spaced over the catalogue beyond it; t-SNE: 2,000)
SEPARATION_SAMPLE = 1000  # points the map's genre silhouette is computed on (dense n x n distances)


def dataset_insights(dataset: str, *, data_dir=None, alpha: float = 0.05, top: int = 20):
    """`recsys insights DATASET` as an `Insights` (summary, tidy tables, segment statements)."""
    from recsys_cli.data.dataset import load_dataset
    from recsys_cli.insights.build import compute_insights, load_frames

    return compute_insights(load_frames(load_dataset(dataset, data_dir)), alpha=alpha, top=top)


def insight_figures(insights) -> list[dict[str, str]]:
    """The figures this dataset supports: [{"name", "caption"}] in report order."""
    from recsys_cli.insights.report import figure_specs

    return [{"name": s.name, "caption": s.caption} for s in figure_specs(insights)]


def insight_figure_svg(insights, name: str) -> str:
    """One insights figure as an SVG document (drawn by recsys_cli.figures; needs matplotlib)."""
    from recsys_cli.figures import builders
    from recsys_cli.figures import render as rd
    from recsys_cli.insights.report import figure_specs

    specs = {s.name: s for s in figure_specs(insights)}
    if name not in specs:
        raise UnknownIdError(f"no figure {name!r} for dataset {insights.dataset!r}; "
                             f"figures: {', '.join(specs) or 'none'}")
    rd.require_matplotlib("figures")
    spec = specs[name]
    kwargs = dict(spec.kwargs)
    if spec.builder == "segment_lift":
        kwargs["alpha"] = insights.summary.get("alpha", 0.05)
    fig = getattr(builders, spec.builder)(insights.tables[spec.table], **kwargs)
    try:
        return rd.svg_text(fig)
    finally:
        rd.close(fig)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) coordinates on the first two principal components and their explained-variance ratios.

    Each component's sign is fixed so its largest-magnitude loading is positive (deterministic maps).
    """
    from recsys_cli.insights.projection import pca_2d as project_pca

    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise UsageError("a map needs at least two item vectors")
    return project_pca(x)


def item_map(run: Any, *, projection: str = "pca", seed: int = 42, data_dir=None, artifacts_dir=None,
             max_points: int = MAP_POINTS, sample: int = SEPARATION_SAMPLE) -> dict[str, Any]:
    """The run's items on a 2-D map of their latent vectors: points (item_id, x, y, title, genre = first genre).

    projection: pca (default; `explained_variance` per axis), tsne (scikit-learn, seeded by `seed`; at most
    2,000 items) or umap (umap-learn, when installed); see `insights.projection`. Beyond `max_points` (or
    the projection's cap) the items shown are evenly spaced over the catalogue: `shown` of `items`.
    `genre_separation`: the genre silhouette of the map itself (euclidean distance between the points, at
    most `sample` of them, per genre against all others, averaged over genres) next to the same for
    shuffled genres; None without genres.
    """
    from recsys_cli.api.data import item_metadata
    from recsys_cli.api.queries import _run
    from recsys_cli.errors import RecsysError
    from recsys_cli.insights.model_report import even_sample, genre_silhouettes
    from recsys_cli.insights.projection import check_projection, project, shown_indices

    method = check_projection(projection)
    r = _run(run, artifacts_dir)
    model = r.model
    vectors = model.estimator._item_vectors()
    if vectors is None:
        raise UsageError(f"run {r.name!r} ({model.name}) has no item vectors to map; "
                         "try a factor model (svd, als, ials, bpr, hybrid-als)")
    ids = model.item_ids
    if len(ids) < 2:
        raise UsageError("a map needs at least two item vectors")
    keep = shown_indices(len(ids), method, max_points)
    proj = project(np.asarray(vectors)[keep], method, seed=seed)
    try:
        meta = item_metadata(r.manifest.dataset, data_dir=data_dir)
    except (RecsysError, OSError):
        meta = {}
    titles = model.titles
    points, listed = [], []
    for item, (x, y) in zip(ids[keep].tolist(), proj.coords.tolist(), strict=True):
        genres = (meta.get(int(item)) or {}).get("genres") or []
        listed.append(genres)
        points.append({"item_id": int(item), "x": float(x), "y": float(y), "title": titles.get(int(item)),
                       "genre": genres[0] if genres else None})
    separation = None
    names = list(dict.fromkeys(g for gs in listed for g in gs))
    if names and len(points) >= 3:
        pick = even_sample(len(points), sample)
        col = {g: j for j, g in enumerate(names)}
        member = np.zeros((len(pick), len(names)), np.float32)
        for row, p in enumerate(pick.tolist()):
            member[row, [col[g] for g in listed[p]]] = 1.0
        rows = genre_silhouettes(proj.coords[pick], member, names, seed=seed, metric="euclidean")
        if rows:
            separation = {"silhouette": float(np.mean([g["silhouette"] for g in rows])),
                          "shuffled": float(np.mean([g["shuffled"] for g in rows])), "items": len(pick),
                          "genres": rows}
    return {"run": r.name, "model": model.name, "projection": method, "axes": list(proj.axes),
            "items": int(len(ids)), "shown": len(points),
            "explained_variance": None if proj.variance is None else [float(v) for v in proj.variance],
            "genre_separation": separation, "points": points}


LEADER_COLUMNS = ("id", "created", "kind", "run", "model", "dataset", "split", "seed", "params", "protocol", "metrics")


def leaderboard(*, metric: str | None = None, kind: str | None = None, dataset: str | None = None,
                limit: int = 50, artifacts_dir=None) -> dict[str, Any]:
    """Ledger entries with metrics, best first by `metric` (default ndcg@10, else rmse, else the first recorded).

    Returns {"metric", "lower_is_better", "metrics": every metric name seen, "rows"}.
    """
    from recsys_cli import ledger

    if limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}")
    rows = [r for r in ledger.query(root=artifacts_dir, kind=kind, dataset=dataset)
            if isinstance(r.get("metrics"), dict) and r["metrics"]]
    names = sorted({k for r in rows for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    if metric is None:
        metric = next((m for m in ("ndcg@10", "rmse") if m in names), names[0] if names else "rmse")
    elif names and metric not in names:
        raise UsageError(f"no ledger entry has metric {metric!r}; recorded: {', '.join(names)}")
    best = ledger.sort_by_metric(rows, metric)[:limit]
    return {"metric": metric, "lower_is_better": ledger.lower_is_better(metric), "metrics": names,
            "rows": [{c: r.get(c) for c in LEADER_COLUMNS} for r in best]}


def abtest_chart(result) -> dict[str, Any]:
    """The A/B figure's tables as plain lists (arms with t intervals, the lift distribution, its interval)."""
    from recsys_cli.abtest.report import plot_tables

    data = result.data if hasattr(result, "data") else result
    tables = plot_tables(data)
    return {"arms": tables["arms"].to_dicts(), "lift": tables["lift"].to_dicts(),
            "lift_ci": tables["lift_ci"].to_dicts()[0]}
