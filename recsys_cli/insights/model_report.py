"""`recsys insights RUN`: the model report of a saved run, as tidy tables (figures: `report.MODEL_SPECS`).

Tables (each a polars DataFrame; the figure beside it shows exactly these numbers):

- hyperparameters: param, value (every config key, defaults included).
- metrics: source (manifest, or the ledger entry's id and date), metric, value.
- learning_curve: iteration, series (train_rmse, train_auc), value, seconds (from the run's
  fit_info history; empty for models fitted in one step).
- item_map: item_id, title, genre (the item's first listed genre), ratings, x, y: the item
  factors of every item with training ratings in 2-D (`insights.projection`): the first two
  principal components by default (summary["item_map_variance"]: their share of the
  variance), or t-SNE / UMAP with `projection`; t-SNE shows at most 2,000 items, evenly spaced
  (summary["item_map_items"] shown of ["item_map_rated"]).
- genre_separation: genre, items, silhouette, shuffled, map_items, map_silhouette, map_shuffled:
  per genre (one at a time: a movie has several), the mean silhouette of its movies against all
  others, cosine distance between item factors, on an evenly spaced sample of at most `sample`
  rated items; `shuffled` is the same for a random set of as many movies (chance). The map_
  columns are the same on the map shown (euclidean distance between the 2-D points of at most
  `sample` of them). summary["genre_separation"] / ["genre_separation_shuffled"] and
  ["item_map_separation"] / ["item_map_separation_shuffled"] average them over the genres
  (each genre counts once).
- popularity_bias: group (catalogue items, training ratings, top-k slots), long_tail_share:
  the long tail is every rated item outside the most-rated 20% (the short head).
- diagnostics: metric, value over the top-k lists of every user the run knows: coverage
  (distinct recommended items / catalogue), novelty (mean -log2 of the share of training users
  who rated the item), popularity_bias (ARP: mean of that share per list, averaged), diversity
  (intra-list 1 - cosine of genre vectors), long_tail_share; the definitions of
  `evaluation.ranking_metrics`.
- segment_ndcg: family, segment, users, ndcg, sem: nDCG@k per user segment on the run's
  split test part (activity tertiles of training ratings; gender, age band, occupation where
  the dataset has users.parquet); family "all" is every evaluated user, which equals
  `recsys evaluate RUN`'s ndcg@k under the same relevance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recsys_cli.insights.build import Insights
from recsys_cli.insights.projection import check_projection, project, shown_indices
from recsys_cli.insights.projection import pca_2d as projection_pca

HEAD_SHARE = 0.2  # the short head: the most-rated 20% of rated items; the rest is the long tail


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """(n, 2) coordinates on the first two principal components, and their share of the variance.

    Signs are fixed so the largest-magnitude loading of each component is positive (same
    vectors, same picture); `insights.projection.pca_2d`.
    """
    coords, ratio = projection_pca(vectors)
    return coords, float(ratio.sum())


def distances(points: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Dense n x n distances: euclidean, or cosine (1 - cosine similarity; a zero vector is at 1 from all)."""
    P = np.asarray(points, np.float64)
    if metric == "cosine":
        norm = np.linalg.norm(P, axis=1, keepdims=True)
        U = np.divide(P, norm, out=np.zeros_like(P), where=norm > 0)
        D = np.clip(1.0 - U @ U.T, 0.0, 2.0)
    elif metric == "euclidean":
        sq = (P**2).sum(axis=1)
        D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * P @ P.T, 0.0))
    else:
        raise ValueError(f"metric must be euclidean or cosine, got {metric!r}")
    np.fill_diagonal(D, 0.0)
    return D


def silhouette(points: np.ndarray | None, labels: np.ndarray, metric: str = "euclidean",
               D: np.ndarray | None = None) -> np.ndarray:
    """Per-point silhouette (b - a) / max(a, b) (Rousseeuw 1987); 0 for a point alone in its label.

    a = mean distance to the other points of its label, b = the smallest mean distance to the
    points of another label. metric: euclidean or cosine; or pass the distances D. Dense
    n x n: call it on a sample.
    """
    D = distances(points, metric) if D is None else D
    labels = np.asarray(labels)
    n = len(labels)
    uniq, codes = np.unique(labels, return_inverse=True)
    onehot = np.zeros((n, len(uniq)))
    onehot[np.arange(n), codes] = 1.0
    sums = D @ onehot  # (n, labels): summed distance to each label's points
    sizes = onehot.sum(axis=0)
    own = sizes[codes] - 1
    a = np.divide(sums[np.arange(n), codes], own, out=np.zeros(n), where=own > 0)
    other = np.where(onehot > 0, np.inf, sums / np.maximum(sizes, 1)[None, :])
    b = other.min(axis=1) if len(uniq) > 1 else np.zeros(n)
    denom = np.maximum(a, b)
    out = np.divide(b - a, denom, out=np.zeros(n), where=denom > 0)
    out[own == 0] = 0.0
    if len(uniq) < 2:
        out[:] = 0.0
    return out


def genre_silhouettes(vectors: np.ndarray, genres: np.ndarray, names, *, min_items: int = 10,
                      seed: int = 42, metric: str = "cosine") -> list[dict[str, Any]]:
    """Per genre: the mean silhouette of its movies against every other movie (cosine distance by default;
    euclidean for the points of a 2-D map, the distance the eye sees).

    One genre at a time (a movie has several), so the score says how far the model put that
    genre's movies apart from the rest; `shuffled` is the same score for a random set of as
    many movies (chance level, slightly below 0). Genres with fewer than min_items movies are skipped.
    """
    D = distances(vectors, metric)
    rng = np.random.default_rng(seed)
    rows = []
    for g, name in enumerate(names):
        member = np.asarray(genres[:, g] > 0)
        if member.sum() < min_items or member.all():
            continue
        fake = rng.permutation(member)
        rows.append({"genre": str(name), "items": int(member.sum()),
                     "silhouette": float(silhouette(None, member, D=D)[member].mean()),
                     "shuffled": float(silhouette(None, fake, D=D)[fake].mean())})
    return sorted(rows, key=lambda r: (-r["silhouette"], r["genre"]))


def even_sample(n: int, size: int) -> np.ndarray:
    """At most `size` evenly spaced indices of range(n) (deterministic)."""
    return np.unique(np.linspace(0, n - 1, min(n, size)).astype(np.int64)) if n else np.zeros(0, np.int64)


def _first_genres(processed, item_ids: np.ndarray) -> tuple[dict[int, str], dict[int, str]]:
    """(raw item id -> first listed genre, raw item id -> title) from the dataset's items table."""
    items = processed.items_table
    genre, title = {}, {}
    cols = set(items.columns)
    for row in items.select([c for c in ("item_id", "title", "genres") if c in cols]).iter_rows(named=True):
        g = row.get("genres") or []
        if g:
            genre[int(row["item_id"])] = g[0]
        if row.get("title") is not None:
            title[int(row["item_id"])] = row["title"]
    return genre, title


def _history_table(fit_info: dict[str, Any]) -> pl.DataFrame:
    rows = []
    history = fit_info.get("history")
    if not history:  # runs saved before `history`: the plain per-iteration lists
        history = [{"iteration": i + 1, **{k: v[i] for k, v in fit_info.items()
                                           if k in ("train_rmse", "train_auc") and isinstance(v, list) and i < len(v)}}
                   for i in range(max([len(v) for k, v in fit_info.items()
                                       if k in ("train_rmse", "train_auc") and isinstance(v, list)] + [0]))]
    for h in history:
        for key, value in h.items():
            if key not in ("iteration", "seconds") and isinstance(value, (int, float)):
                rows.append({"iteration": int(h["iteration"]), "series": key, "value": float(value),
                             "seconds": h.get("seconds")})
    return pl.DataFrame(rows, schema={"iteration": pl.Int64, "series": pl.String, "value": pl.Float64,
                                      "seconds": pl.Float64})


def _metrics_table(run: str, manifest: dict[str, Any], artifacts_dir) -> pl.DataFrame:
    from recsys_cli import ledger

    rows = [{"source": "manifest", "metric": k, "value": float(v)} for k, v in (manifest.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for entry in ledger.query(root=artifacts_dir, kind="evaluate", model=manifest.get("model")):
        if entry.get("run") != run or not isinstance(entry.get("metrics"), dict):
            continue
        source = f"ledger #{entry['id']} {str(entry.get('created') or '')[:16]}"
        rows.extend({"source": source, "metric": k, "value": float(v)} for k, v in entry["metrics"].items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool))
    return pl.DataFrame(rows, schema={"source": pl.String, "metric": pl.String, "value": pl.Float64})


def _item_map(est, genre_of: dict[int, str], titles: dict[int, str], genres: np.ndarray | None, names,
              sample: int, seed: int, projection: str = "pca"):
    """(item_map table, genre_separation table, summary entries) or None when the model has no item vectors."""
    vec = est._item_vectors()
    if vec is None:
        return None
    rated = np.flatnonzero(est.item_counts > 0)
    shown = rated[shown_indices(len(rated), projection)]
    proj = project(vec[shown], projection, seed=seed)
    coords = proj.coords
    ids = est.item_ids[shown]
    item_map = pl.DataFrame({"item_id": ids.astype(np.int64), "title": [titles.get(int(i)) for i in ids.tolist()],
                             "genre": [genre_of.get(int(i)) for i in ids.tolist()],
                             "ratings": est.item_counts[shown].astype(np.int64),
                             "x": coords[:, 0], "y": coords[:, 1]},
                            schema={"item_id": pl.Int64, "title": pl.String, "genre": pl.String, "ratings": pl.Int64,
                                    "x": pl.Float64, "y": pl.Float64})
    summary: dict[str, Any] = {"item_map_projection": proj.method, "item_map_items": len(shown),
                               "item_map_rated": len(rated)}
    if proj.variance is not None:
        summary["item_map_variance"] = float(proj.variance.sum())
    schema = {"genre": pl.String, "items": pl.Int64, "silhouette": pl.Float64, "shuffled": pl.Float64,
              "map_items": pl.Int64, "map_silhouette": pl.Float64, "map_shuffled": pl.Float64}
    sep = pl.DataFrame(schema=schema)
    if genres is not None and len(rated) >= 3:
        pick = rated[even_sample(len(rated), sample)]  # the factor space: every rated item, whatever is shown
        rows = {r["genre"]: r for r in genre_silhouettes(vec[pick], genres[pick], names, seed=seed)}
        on_map = even_sample(len(shown), sample)  # the map: the dots shown (the same items for pca)
        map_rows = {r["genre"]: r for r in genre_silhouettes(coords[on_map], genres[shown[on_map]], names, seed=seed,
                                                             metric="euclidean")}
        merged = []
        for g in sorted(set(rows) | set(map_rows)):
            r, m = rows.get(g, {}), map_rows.get(g, {})
            merged.append({"genre": g, "items": r.get("items"), "silhouette": r.get("silhouette"),
                           "shuffled": r.get("shuffled"), "map_items": m.get("items"),
                           "map_silhouette": m.get("silhouette"), "map_shuffled": m.get("shuffled")})
        if merged:
            sep = pl.DataFrame(merged, schema=schema).sort(["silhouette", "genre"], descending=[True, False],
                                                           nulls_last=True)
            if rows:
                summary.update(genre_separation=float(sep["silhouette"].mean()),
                               genre_separation_shuffled=float(sep["shuffled"].mean()),
                               genre_separation_items=len(pick))
            if map_rows:
                summary.update(item_map_separation=float(sep["map_silhouette"].mean()),
                               item_map_separation_shuffled=float(sep["map_shuffled"].mean()),
                               item_map_separation_items=len(on_map))
    return item_map, sep, summary


def _top_lists(est, k: int) -> tuple[np.ndarray, np.ndarray]:
    users = np.flatnonzero(est.user_counts > 0)
    return users, est.recommend_indices(users.astype(np.int64), k)


def _diagnostics(est, recs: np.ndarray, genres: np.ndarray | None, k: int):
    """(diagnostics table, popularity_bias table) over the top-k lists `recs` (item indices, -1 padded)."""
    from recsys_cli.evaluation.ranking_metrics import _unit_genres, intra_list_diversity

    n_items = est.n_items
    valid = recs >= 0
    slots = recs[valid]
    n_train_users = int((est.user_counts > 0).sum())
    p = est.item_counts.astype(np.float64) / max(1, n_train_users)  # share of training users per item
    floor = 1.0 / max(1, n_train_users)
    rated = np.flatnonzero(est.item_counts > 0)
    order = rated[np.lexsort((rated, -est.item_counts[rated]))]
    head = np.zeros(n_items, bool)
    head[order[: int(np.ceil(HEAD_SHARE * len(order)))]] = True
    tail = ~head & (est.item_counts > 0)
    per_list = valid.sum(axis=1)
    listed = per_list > 0
    arp = np.where(valid, p[np.maximum(recs, 0)], 0.0).sum(axis=1)[listed] / per_list[listed]
    rows = [("users", float(len(recs))), (f"coverage@{k}", float(np.unique(slots).size / n_items)),
            (f"novelty@{k}", float(np.mean(-np.log2(np.maximum(p[slots], floor)))) if slots.size else float("nan")),
            (f"popularity_bias@{k}", float(arp.mean()) if arp.size else float("nan")),
            (f"long_tail_share@{k}", float(tail[slots].mean()) if slots.size else float("nan"))]
    if genres is not None and genres.shape[1]:
        div = intra_list_diversity(np.ascontiguousarray(recs, np.int32), np.array([k], np.int64),
                                   _unit_genres(genres, n_items))
        if not np.all(np.isnan(div)):
            rows.append((f"diversity@{k}", float(np.nanmean(div))))
    diagnostics = pl.DataFrame({"metric": [r[0] for r in rows], "value": [r[1] for r in rows]})
    counts = est.item_counts.astype(np.float64)
    pop = pl.DataFrame({
        "group": ["catalogue items", "training ratings", f"top-{k} slots"],
        "long_tail_share": [float(tail.sum() / max(1, len(rated))), float(counts[tail].sum() / max(1.0, counts.sum())),
                            float(tail[slots].mean()) if slots.size else float("nan")],
    })
    return diagnostics, pop


def _segment_ndcg(est, processed, split: str, k: int, relevance: str, threshold: float):
    """Per-segment nDCG@k on the split's test part (None without a split or relevant items)."""
    from recsys_cli.abtest.segments import _sort_key, activity_labels, demographic_labels
    from recsys_cli.evaluation.protocols import EvalSettings, relevant_csr
    from recsys_cli.evaluation.ranking_metrics import ranking_per_user

    test = processed.interactions(split, "test").on_items(est.item_ids)
    if not len(test):
        return None
    settings = EvalSettings(relevance=relevance, threshold=threshold, ks=(k,))
    users_all = np.unique(test.users)
    indptr, indices = relevant_csr(test, users_all, settings)
    has = np.diff(indptr) > 0
    users = users_all[has]
    if not len(users):
        return None
    indptr = np.concatenate([[0], np.cumsum(np.diff(indptr)[has])]).astype(np.int64)
    raw_users = test.user_ids[users]
    recs_raw = est.recommend(raw_users, k).items
    recs = np.where(recs_raw >= 0, np.searchsorted(est.item_ids, np.maximum(recs_raw, 0)), -1).astype(np.int32)
    per_user = ranking_per_user(recs, indptr, indices.astype(np.int32), np.ones(len(indices)),
                                np.array([k], np.int64))[:, 0, 2]
    known = est.known_users(raw_users)
    train_counts = np.where(known >= 0, est.user_counts[np.maximum(known, 0)], 0)
    families = {"activity": activity_labels(train_counts)}
    families.update(demographic_labels(processed.path / "users.parquet", raw_users))
    rows = [{"family": "all", "segment": "all users", "users": len(users), "ndcg": float(per_user.mean()),
             "sem": float(per_user.std(ddof=1) / np.sqrt(len(users))) if len(users) > 1 else 0.0}]
    for family, labels in families.items():
        labels = np.asarray(labels, dtype=object)
        for seg in sorted(set(labels.tolist()), key=lambda x: _sort_key(str(x))):
            sel = labels == seg
            vals = per_user[sel]
            rows.append({"family": family, "segment": str(seg), "users": int(sel.sum()), "ndcg": float(vals.mean()),
                         "sem": float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0})
    return pl.DataFrame(rows, schema={"family": pl.String, "segment": pl.String, "users": pl.Int64,
                                      "ndcg": pl.Float64, "sem": pl.Float64})


def model_report(run_name: str, *, k: int = 10, sample: int = 1000, relevance: str | None = None,
                 threshold: float = 4.0, seed: int = 42, projection: str = "pca", data_dir=None,
                 artifacts_dir=None) -> Insights:
    """Every table of the model report of saved run `run_name` (see the module docstring).

    relevance for the segment nDCG: 'threshold' (held-out rating >= threshold) or 'any';
    default: 'any' for ranking models (ials, bpr), 'threshold' for rating models.
    projection: the item map's, pca (default), tsne or umap (`insights.projection`; seeded by
    `seed`, which also draws the shuffled-genre baseline).
    """
    projection = check_projection(projection)  # before any loading: a missing package is one line at once
    from recsys_cli.artifacts import ArtifactStore
    from recsys_cli.data.dataset import load_dataset
    from recsys_cli.errors import DataError

    store = ArtifactStore(artifacts_dir)
    est, manifest = store.load(run_name)
    dataset, split = manifest.get("dataset"), manifest.get("split")
    relevance = relevance or ("threshold" if est.predicts_ratings else "any")
    summary: dict[str, Any] = {"run": run_name, "model": manifest.get("model"), "dataset": dataset,
                               "split": split or "", "seed": manifest.get("seed"),
                               "train_seconds": float(manifest.get("train_seconds") or 0.0),
                               "users": int((est.user_counts > 0).sum()), "items": int(est.n_items),
                               "train_ratings": manifest.get("n_train_ratings") or int(len(est.seen_indices))}
    try:
        processed = load_dataset(dataset, data_dir)
        if manifest.get("dataset_fingerprint") and processed.fingerprint != manifest["dataset_fingerprint"]:
            processed = None
    except DataError:
        processed = None
    genre_of, titles = _first_genres(processed, est.item_ids) if processed is not None else ({}, {})
    titles = titles or store.titles(run_name)
    genres, names = None, ()
    if processed is not None:
        from recsys_cli.data.dataset import lookup

        mat, names = processed.genres
        rows = lookup(processed.vocabularies[1], est.item_ids)
        genres = np.where((rows >= 0)[:, None], mat[np.maximum(rows, 0)], 0.0).astype(np.float32)
    config = manifest.get("config") or {}
    tables: dict[str, pl.DataFrame] = {
        # values keep their types (100, 0.01, "log", None): JSON shows them as the manifest has them
        "hyperparameters": pl.DataFrame({"param": list(config), "value": list(config.values())},
                                        schema={"param": pl.String, "value": pl.Object}),
        "metrics": _metrics_table(run_name, manifest, artifacts_dir),
        "learning_curve": _history_table(manifest.get("fit_info") or {}),
    }
    mapped = _item_map(est, genre_of, titles, genres, names, sample, seed, projection)
    if mapped is not None:
        tables["item_map"], tables["genre_separation"], extra = mapped
        summary.update(extra)
    _, recs = _top_lists(est, k)
    tables["diagnostics"], tables["popularity_bias"] = _diagnostics(est, recs, genres, k)
    summary.update({r["metric"]: r["value"] for r in tables["diagnostics"].iter_rows(named=True)
                    if r["metric"] != "users"})
    if processed is not None and split:
        seg = _segment_ndcg(est, processed, split, k, relevance, threshold)
        if seg is not None:
            tables["segment_ndcg"] = seg
            summary[f"ndcg@{k}"] = float(seg["ndcg"][0])
            summary["relevance"] = "any held-out rating" if relevance == "any" else f"held-out rating >= {threshold:g}"
    notes = []
    if tables["learning_curve"].is_empty():
        notes.append(f"{manifest.get('model')} records no per-iteration training figures: no learning curve")
    if processed is None:
        notes.append(f"dataset {dataset!r} is not processed here (or changed): no genres, titles or segments")
    return Insights(dataset=run_name, summary=summary, tables=tables, statements=notes, subject="run")
