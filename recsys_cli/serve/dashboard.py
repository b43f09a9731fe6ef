"""The dashboard's JSON endpoints (each one call into `recsys_cli.api`) and, with `ui=True`, the static page.

    GET /items?q=star&run=..      catalogue search by title (the cold-start picker)
    GET /abtest?run_a=&run_b=     the simulated A/B test of two served runs, with its chart tables
    GET /insights/{dataset}       `recsys insights` tables + the list of figures
    GET /figures/{dataset}/{name}.svg   one insights figure (matplotlib, SVG)
    GET /map?run=&projection=     2-D map of the run's item vectors (pca, tsne, umap) with its genre silhouette
    GET /leaderboard?metric=      ledger entries, best first
    GET /ui/                      the page (recsys_cli/ui: HTML + one JS + one CSS; no build, no CDN)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from recsys_cli.serve.schemas import ApiError, QueryInt

UI_DIR = Path(__file__).resolve().parent.parent / "ui"


class Memo:
    """A small bounded, thread-safe memo of expensive answers (insights, figures, maps, A/B tests)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._data: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: tuple, compute):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()  # outside the lock: two first requests may both compute, the answers are equal
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value


def add_dashboard(app: FastAPI, registry, *, json_response, use, ui: bool = False) -> None:
    """Register the dashboard endpoints on `app`; `use(request, run)` resolves a served run (as in app.py)."""
    from recsys_cli.api import explore

    memo = Memo()

    def served_datasets() -> set[str]:
        return {r.run.manifest.dataset for r in registry.loaded()}

    def check_dataset(dataset: str) -> None:
        if dataset not in served_datasets():
            raise ApiError(404, f"dataset {dataset[:200]!r} is not the dataset of a served run "
                           f"({', '.join(sorted(served_datasets()))})", "unknown_dataset")

    def fingerprints(dataset: str) -> tuple:
        # part of the memo key: runs retrained on re-processed data (then reloaded) get fresh insights
        return tuple(sorted({r.run.manifest.dataset_fingerprint for r in registry.loaded()
                             if r.run.manifest.dataset == dataset}))

    def insights_of(dataset: str):
        return memo.get_or_compute(("insights", dataset, fingerprints(dataset)),
                                   lambda: explore.dataset_insights(dataset, data_dir=registry.data_dir))

    @app.get("/items", tags=["items"])
    async def items_search(request: Request, q: str = Query("", max_length=200, description="Part of a title."),
                           run: str | None = None, limit: Annotated[QueryInt, Query(ge=1, le=500)] = 20):
        """Items of the run's catalogue whose title contains `q` (case-insensitive), in catalogue order."""
        loaded = use(request, run)
        info = await run_in_threadpool(loaded.item_info, registry.data_dir)
        needle = q.strip().lower()
        out = []
        for row in info.values():
            if needle in (row.get("title") or "").lower():
                out.append(row)
                if len(out) >= limit:
                    break
        return json_response(out)

    @app.get("/abtest", tags=["dashboard"])
    async def abtest(request: Request, run_a: str, run_b: str,
                     users: Annotated[QueryInt | None, Query(ge=10, description="Sample this many eligible users.")] = None,
                     k: Annotated[QueryInt, Query(ge=1, le=100)] = 10, traffic: float = Query(0.5, gt=0, lt=1),
                     click_model: str = "threshold", bootstrap: Annotated[QueryInt, Query(ge=0, le=20000)] = 1000,
                     seed: int = 42):
        """The simulated A/B test of two served runs (`recsys abtest A B --format json`), plus `chart`: the
        figure's tables (arms with t intervals, the lift distribution and its interval)."""
        a, b = use(request, run_a), use(request, run_b)
        if a.name == b.name:
            raise ApiError(422, "run_a and run_b are the same run", "invalid")

        def compute():
            from recsys_cli.api import abtest as run_abtest

            result = run_abtest(a.name, b.name, k=k, users=users, traffic=traffic, click_model=click_model,
                                bootstrap=bootstrap, seed=seed, data_dir=registry.data_dir,
                                artifacts_dir=registry.artifacts_dir)
            return {**result.to_dict(), "notes": result.notes, "chart": explore.abtest_chart(result)}

        key = ("abtest", a.name, a.generation, b.name, b.generation, users, k, traffic, click_model, bootstrap, seed)
        return json_response(await run_in_threadpool(memo.get_or_compute, key, compute))

    @app.get("/insights/{dataset}", tags=["dashboard"])
    async def insights(dataset: str):
        """`recsys insights DATASET --format json` (summary, statements, tables) and `figures` [{name, caption}]."""
        check_dataset(dataset)
        ins = await run_in_threadpool(insights_of, dataset)
        return json_response({**ins.to_dict(), "figures": explore.insight_figures(ins)})

    @app.get("/figures/{dataset}/{name}.svg", tags=["dashboard"])
    async def figure(dataset: str, name: str):
        """One insights figure as SVG, drawn by recsys_cli.figures (needs matplotlib: the plot extra)."""
        check_dataset(dataset)

        def draw():
            return explore.insight_figure_svg(insights_of(dataset), name)

        svg = await run_in_threadpool(memo.get_or_compute, ("figure", dataset, fingerprints(dataset), name), draw)
        return Response(svg.encode("utf-8"), media_type="image/svg+xml")

    @app.get("/map", tags=["dashboard"])
    async def item_map(request: Request, run: str | None = None,
                       projection: str = Query("pca", max_length=20,
                                               description="pca, tsne (the maps extra) or umap (umap-learn)"),
                       seed: Annotated[QueryInt, Query(description="Seed of the t-SNE / UMAP map and the shuffled genres.")] = 42):
        """The run's items on a 2-D map of their latent vectors (item_id, x, y, title, genre): the first two
        principal components by default, or t-SNE / UMAP (`projection`), with the map's genre silhouette;
        422 for a model without item vectors (knn, baselines) or a projection whose package is missing."""
        from recsys_cli.insights.projection import check_projection

        method = check_projection(projection)  # 422 naming the install command, before the run is touched
        loaded = use(request, run)
        key = ("map", loaded.name, loaded.generation, method, seed)
        return json_response(await run_in_threadpool(
            memo.get_or_compute, key,
            lambda: explore.item_map(loaded.run, projection=method, seed=seed, data_dir=registry.data_dir)))

    @app.get("/leaderboard", tags=["dashboard"])
    async def leaderboard(metric: str | None = None, kind: str | None = None, dataset: str | None = None,
                          limit: Annotated[QueryInt, Query(ge=1, le=1000)] = 50):
        """Ledger entries (train / evaluate / tune) with metrics, best first by `metric`."""
        board = await run_in_threadpool(explore.leaderboard, metric=metric, kind=kind, dataset=dataset, limit=limit,
                                        artifacts_dir=registry.artifacts_dir)
        return json_response(board)

    if ui:
        from starlette.staticfiles import StaticFiles

        @app.get("/", include_in_schema=False)
        async def root():
            return RedirectResponse("/ui/", status_code=307)

        app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
