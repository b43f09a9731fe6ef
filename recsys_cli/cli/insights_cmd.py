"""`recsys insights DATASET`: key numbers and small text charts, every table as JSON, figures and an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli.cli.common import ArtifactsDirOpt, DataDirOpt, FormatOpt, JsonOpt

HELP = """Describe a processed dataset (ratings, long tail, items, genres, time, segments, tags) or a trained run.

RUN (a saved run's name): the model report: hyperparameters and metrics (manifest and
ledger), the learning curve, a 2-D map of the item factors coloured by genre with the genre
silhouette, coverage / novelty / popularity bias / diversity / long-tail share over every
user's top-10, and nDCG@10 per user segment on the run's held-out ratings. The map is PCA by
default; --projection tsne uses scikit-learn's t-SNE (pip install 'recsys-cli[maps]'; at most
2,000 items, evenly spaced), --projection umap umap-learn's UMAP (pip install umap-learn),
both seeded by --seed.

DATASET:

Ratings: distribution, activity per user and item, Gini and the share of ratings held by
the top 1%/10% of items, sparsity, cold-start shares (under 5/20 ratings). Items: top movies
by count and by damped mean, genre popularity, P(genre B | genre A), release years, rating
by genre. Time (with timestamps): ratings per month, weekday x hour, mean rating over time,
user tenure. Segments (ml-100k/ml-1m demographics): genre preference lift by age band, gender
and occupation, per-user Welch tests, Holm-adjusted; a finding is stated only when the
adjusted p is below --alpha. Tags (where present): top tags, tags per genre.

A table on a terminal; --format json gives every table. --out DIR writes each figure as PNG
and SVG plus each table as CSV; --html FILE writes one offline page (figures and tables,
no scripts, no external links). Figures need matplotlib: pip install 'recsys-cli[plot]'.

Examples:

\b
  recsys insights ml-100k
  recsys insights ml-100k --format json > insights.json
  recsys insights ml-100k --out figures/ --html insights.html
  recsys insights svd-ml-100k-random --html svd-report.html
  recsys insights ials-ml-100k-user --projection tsne --out ials-report/
"""

BARS = "▁▂▃▄▅▆▇█"


def spark(values) -> str:
    values = [float(v) for v in values]
    top = max(values, default=0.0)
    if top <= 0:
        return ""
    return "".join(BARS[min(len(BARS) - 1, int(round((len(BARS) - 1) * v / top)))] for v in values)


def bar(value: float, largest: float, width: int = 24) -> str:
    n = round(width * value / largest) if largest else 0
    return "█" * n + ("▏" if value and n == 0 else "")


def render_summary(ins, console, statements: int = 8) -> None:
    """The compact terminal view: key numbers and small text charts."""
    import polars as pl
    from rich import box
    from rich.table import Table

    from recsys_cli.output import fit_table

    s, t = ins.summary, ins.tables
    console.print(f"[bold]{ins.dataset}[/bold]: {s['ratings']:,} ratings, {s['users']:,} users, {s['items']:,} items "
                  f"({s['rated_items']:,} rated); sparsity {s['sparsity']:.2%}; mean rating {s['mean_rating']:.2f}")
    dist = Table(title="ratings", title_justify="left", show_header=False, box=None)
    for justify in ("right", "left", "right", "right"):
        dist.add_column(justify=justify)
    rd = t["rating_distribution"]
    largest = max(rd["ratings"].to_list())
    for r in rd.iter_rows(named=True):
        dist.add_row(f"{r['rating']:g}", bar(r["ratings"], largest), f"{r['ratings']:,}", f"{r['share']:.1%}")
    console.print(fit_table(dist, console.width))
    console.print(f"long tail: Gini items {s['gini_items']:.3f}, users {s['gini_users']:.3f}; the top 1% of items hold "
                  f"{s['top_1pct_items_share']:.1%} of ratings, the top 10% hold {s['top_10pct_items_share']:.1%}")
    console.print(f"cold start: users under 5 / 20 ratings {s['users_under_5_share']:.1%} / {s['users_under_20_share']:.1%}; "
                  f"items {s['items_under_5_share']:.1%} / {s['items_under_20_share']:.1%}")
    tops = Table(title="top movies", title_justify="left", box=box.SIMPLE_HEAD)
    for col, justify in (("#", "right"), ("most rated", "left"), ("n", "right"), ("best damped mean", "left"), ("mean", "right")):
        tops.add_column(col, justify=justify)
    by_n, by_mean = t["top_items_by_count"].head(5).to_dicts(), t["top_items_by_damped_mean"].head(5).to_dicts()
    for k, (a, b) in enumerate(zip(by_n, by_mean, strict=False), 1):
        tops.add_row(str(k), str(a["title"]), f"{a['ratings']:,}", str(b["title"]), f"{b['damped_mean']:.2f}")
    console.print(fit_table(tops, console.width))
    genres = t["genres"]
    if not genres.is_empty():
        g = Table(title=f"genres by share of ratings (of {len(genres)})", title_justify="left", show_header=False, box=None)
        for justify in ("left", "left", "right", "right"):
            g.add_column(justify=justify)
        largest = genres["share_of_ratings"].max()
        for r in genres.head(10).iter_rows(named=True):
            g.add_row(r["genre"], bar(r["share_of_ratings"], largest), f"{r['share_of_ratings']:.1%}",
                      f"mean {r['mean_rating']:.2f}" if r["mean_rating"] is not None else "")
        console.print(fit_table(g, console.width))
    if "weekday_hour" in t:
        wh = t["weekday_hour"]
        days = wh.group_by("weekday", "day").agg(pl.col("ratings").sum()).sort("weekday")
        hours = wh.group_by("hour").agg(pl.col("ratings").sum()).sort("hour")
        console.print(f"time: {s['first_rating']} .. {s['last_rating']} (UTC)")
        console.print(f"  by weekday {' '.join(days['day'].to_list())}  {spark(days['ratings'].to_list())}")
        console.print(f"  by hour    0..23  {spark(hours['ratings'].to_list())}")
        months = t["monthly"]["ratings"].to_list()
        per = -(-len(months) // max(12, console.width - 40))  # months per bar, so the line fits the terminal
        bars = [sum(months[i:i + per]) for i in range(0, len(months), per)]
        console.print(f"  per month  {spark(bars)}  ({len(months)} months" + (f", {per} per bar)" if per > 1 else ")"))
        tenure = t["user_tenure"].to_dicts()
        console.print("  user tenure " + ", ".join(f"{r['bin']} {r['share']:.0%}" for r in tenure))
    if "segment_lift" in t:
        found = ins.statements
        console.print(f"[bold]segments[/bold]: {len(found)} of {s.get('segment_tests', 0):,} (segment, genre) tests "
                      f"significant after Holm correction (alpha {s['alpha']:g}; per-user Welch t-tests)")
        for line in found[:statements]:
            console.print(f"  - {line}")
        if len(found) > statements:
            console.print(f"  ... and {len(found) - statements} more (--format json, table segment_lift)")
    if "top_tags" in t:
        tags = t["top_tags"].head(10)
        console.print("top tags: " + ", ".join(f"{r['tag']} ({r['applications']:,})" for r in tags.iter_rows(named=True)))


def register(app: typer.Typer) -> None:
    @app.command("insights", help=HELP)
    def insights_cmd(
        dataset: Annotated[str, typer.Argument(help="A processed dataset (see `recsys info`) or a run (see `recsys runs`).", show_default=False, metavar="DATASET|RUN")],
        out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the figures (PNG + SVG) and tables (CSV, insights.json).", show_default=False)] = None,
        html: Annotated[Optional[Path], typer.Option("--html", help="Write a self-contained offline HTML report here.", show_default=False)] = None,
        alpha: Annotated[float, typer.Option("--alpha", help="Significance level for segment findings (after Holm correction).")] = 0.05,
        top: Annotated[int, typer.Option("--top", help="Rows in the top-movie and top-tag tables.", min=1)] = 20,
        projection: Annotated[Optional[str], typer.Option("--projection", help="RUN: the item map's projection: pca (default), tsne (the maps extra) or umap (umap-learn).", show_default=False, metavar="pca|tsne|umap")] = None,
        seed: Annotated[int, typer.Option("--seed", help="RUN: seed of the t-SNE / UMAP map and of the shuffled-genre baseline.")] = 42,
        data_dir: DataDirOpt = None,
        artifacts_dir: ArtifactsDirOpt = None,
        fmt: FormatOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        from recsys_cli.abtest.statistics import check_alpha
        from recsys_cli.api.explore import dataset_insights
        from recsys_cli.cli.model_report_view import is_run, model_report_cmd
        from recsys_cli.figures.render import check_output_dir, check_output_file, require_matplotlib
        from recsys_cli.output import console_out, resolve_format
        from recsys_cli.output.insights import emit_insights, written_lines

        out_fmt = resolve_format(fmt, as_json)
        check_alpha(alpha)
        for option, value in (("--out", out), ("--html", html)):
            if value is not None:
                require_matplotlib(option)
        if out is not None:
            check_output_dir(out, "--out")  # before the work, not after it
        if html is not None:
            check_output_file(html, "--html")
        if is_run(dataset, artifacts_dir):
            from recsys_cli.insights.projection import check_projection

            given = [flag for flag, value, default in (("--alpha", alpha, 0.05), ("--top", top, 20)) if value != default]
            if given:  # dataset-only options were silently ignored for a run
                from recsys_cli.errors import UsageError

                raise UsageError(f"{' and '.join(given)} {'are' if len(given) > 1 else 'is'} for a dataset's insights; "
                                 f"{dataset!r} is a saved run (its report has no segment findings or top tables)")

            return model_report_cmd(dataset, out=out, html=html, out_fmt=out_fmt, data_dir=data_dir,
                                    artifacts_dir=artifacts_dir, projection=check_projection(projection), seed=seed)
        if projection is not None:
            from recsys_cli.errors import UsageError

            raise UsageError(f"--projection is for a run's item map; {dataset!r} is not a saved run")
        ins = dataset_insights(dataset, data_dir=data_dir, alpha=alpha, top=top)
        written = []
        if out is not None or html is not None:
            from recsys_cli.insights.report import render

            written = render(ins, out, html)
            for line in written_lines(ins, written, out, html):
                typer.echo(line, err=True)
        emit_insights(ins, out_fmt, written, render_summary, console_out())
