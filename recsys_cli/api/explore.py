"""Views for exploring data and runs: dataset insights with their figures, the latent-space map of a
run's items, the runs leaderboard from the ledger, and the A/B chart's tables. Used by the dashboard
(`recsys serve --ui`) and usable from a notebook:

    ins = rs.api.explore.dataset_insights("ml-100k")
    svg = rs.api.explore.insight_figure_svg(ins, "genre_popularity")
    m = rs.api.explore.item_map("svd-ml-100k-random")          # 2-D PCA of the item vectors
    board = rs.api.explore.leaderboard(metric="rmse")
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_cli.errors import UnknownIdError, UsageError

MAP_POINTS = 5000  # at most this many items on the map (evenly spaced over the catalogue beyond it)


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
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise UsageError("a map needs at least two item vectors")
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    for row in comps:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1.0
    coords = x @ comps.T
    if coords.shape[1] < 2:  # one-dimensional vectors: the second axis is flat
        coords = np.hstack([coords, np.zeros((coords.shape[0], 1))])
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return coords, np.pad(ratio, (0, 2 - ratio.size))


def item_map(run: Any, *, data_dir=None, artifacts_dir=None, max_points: int = MAP_POINTS) -> dict[str, Any]:
    """The run's items on the 2-D PCA of their latent vectors: points (item_id, x, y, title, genre = first genre)."""
    from recsys_cli.api.data import item_metadata
    from recsys_cli.api.queries import _run
    from recsys_cli.errors import RecsysError

    r = _run(run, artifacts_dir)
    model = r.model
    vectors = model.estimator._item_vectors()
    if vectors is None:
        raise UsageError(f"run {r.name!r} ({model.name}) has no item vectors to map; "
                         "try a factor model (svd, als, ials, bpr, hybrid-als)")
    ids = model.item_ids
    keep = np.arange(len(ids))
    if len(ids) > max_points:
        keep = np.unique(np.linspace(0, len(ids) - 1, max_points).round().astype(np.int64))
    coords, ratio = pca_2d(np.asarray(vectors)[keep])
    try:
        meta = item_metadata(r.manifest.dataset, data_dir=data_dir)
    except (RecsysError, OSError):
        meta = {}
    titles = model.titles
    points = []
    for item, (x, y) in zip(ids[keep].tolist(), coords.tolist(), strict=True):
        genres = (meta.get(int(item)) or {}).get("genres") or []
        points.append({"item_id": int(item), "x": float(x), "y": float(y), "title": titles.get(int(item)),
                       "genre": genres[0] if genres else None})
    return {"run": r.name, "model": model.name, "items": int(len(ids)), "shown": len(points),
            "explained_variance": [float(v) for v in ratio], "points": points}


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
