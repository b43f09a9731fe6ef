"""`recsys insights RUN`: the model report of a saved run on the terminal, as JSON/CSV, PNG/SVG and HTML."""

from __future__ import annotations

from pathlib import Path

import typer

COUNTS = ("users_evaluated", "users_skipped")  # recorded beside the metrics, printed as counts


def is_run(name: str, artifacts_dir=None) -> bool:
    """True when `name` is a saved run in the artifacts folder (insights then reports on the model)."""
    from recsys_cli.artifacts import ArtifactStore
    from recsys_cli.errors import RecsysError

    try:
        return ArtifactStore(artifacts_dir).exists(name)
    except RecsysError:  # not a valid run name: a dataset
        return False


def map_line(s: dict) -> str:
    """The item map in one line: projection, items shown, variance kept (PCA), genre silhouette on the map and
    in the factor space, each next to its shuffled-genre chance level."""
    from recsys_cli.insights.projection import LABELS

    method = s.get("item_map_projection", "pca")
    line = f"item map: {LABELS.get(method, method)} of the item factors"
    if s["item_map_items"] < s.get("item_map_rated", s["item_map_items"]):
        line += f", {s['item_map_items']:,} of {s['item_map_rated']:,} rated items (evenly spaced)"
    if "item_map_variance" in s:
        line += f", keeps {s['item_map_variance']:.0%} of the variance"
    if "item_map_separation" in s:
        line += (f"; genre silhouette on the map {s['item_map_separation']:+.3f} (shuffled "
                 f"{s['item_map_separation_shuffled']:+.3f}, {s['item_map_separation_items']:,} items)")
    if "genre_separation" in s:
        line += (f"; in the factors {s['genre_separation']:+.3f} (shuffled {s['genre_separation_shuffled']:+.3f}, "
                 f"{s['genre_separation_items']:,} items)")
    return line


def render_model_summary(ins, console) -> None:
    """Key numbers, the learning curve as a sparkline, diagnostics, genre separation and segment nDCG."""
    from rich import box
    from rich.table import Table

    from recsys_cli.cli.insights_cmd import bar, spark
    from recsys_cli.output import fit_table

    s, t = ins.summary, ins.tables
    console.print(f"[bold]{s['run']}[/bold]: {s['model']} on {s['dataset']}" + (f" split {s['split']}" if s["split"] else "")
                  + f"; {s['train_ratings']:,} training ratings, {s['users']:,} users, {s['items']:,} items; "
                  f"trained in {s['train_seconds']:.2f} s (seed {s['seed']})")
    params = t["hyperparameters"]
    console.print("hyperparameters: " + " ".join(f"{p}={'none' if v is None else v}" for p, v in params.iter_rows()))
    curve = t["learning_curve"]
    for name in dict.fromkeys(curve["series"].to_list()):
        vals = curve.filter(curve["series"] == name).sort("iteration")["value"].to_list()
        console.print(f"learning curve {name}: {vals[0]:.4f} -> {vals[-1]:.4f} over {len(vals)} iterations  "
                      f"{spark([v - min(vals) + 1e-12 for v in vals])}")
    metrics = t["metrics"]
    if not metrics.is_empty():
        latest = metrics.unique(subset=["metric"], keep="first", maintain_order=True)
        console.print("metrics (held-out, from evaluate): " + ", ".join(
            f"{m} {v:,.0f}" if m in COUNTS else f"{m} {v:.4f}"
            for m, v in zip(latest["metric"], latest["value"], strict=True)))
    console.print("recommendations (top-10 of every user):")  # a line, not a title: it fits over the narrow table
    diag = Table(show_header=False, box=None)
    diag.add_column()
    diag.add_column(justify="right")
    for m, v in t["diagnostics"].iter_rows():
        diag.add_row(m, f"{v:,.0f}" if m == "users" else f"{v:.4f}")
    console.print(diag)
    pop = t["popularity_bias"]
    console.print("long-tail share: " + ", ".join(f"{g} {v:.1%}" for g, v in pop.iter_rows()))
    if "item_map_items" in s:
        console.print(map_line(s))
    if "segment_ndcg" in t:
        seg = t["segment_ndcg"]
        table = Table(title=f"nDCG@10 by segment ({s.get('relevance', '')})", title_justify="left", box=box.SIMPLE_HEAD)
        for col, justify in (("segment", "left"), ("users", "right"), ("nDCG", "right"), ("", "left")):
            table.add_column(col, justify=justify)
        top = max(seg["ndcg"].to_list())
        for family, segment, users, ndcg, _ in seg.iter_rows():
            table.add_row(segment if family == "all" else f"{family}: {segment}", f"{users:,}", f"{ndcg:.4f}",
                          bar(ndcg, top, 20))
        console.print(fit_table(table, console.width))
    for note in ins.statements:
        console.print(f"note: {note}")


def model_report_cmd(name: str, *, out: Path | None, html: Path | None, out_fmt: str, data_dir, artifacts_dir,
                     projection: str = "pca", seed: int = 42) -> None:
    from recsys_cli.api.queries import model_report
    from recsys_cli.output import console_out
    from recsys_cli.output.insights import emit_insights, written_lines

    ins = model_report(name, projection=projection, seed=seed, data_dir=data_dir, artifacts_dir=artifacts_dir)
    written = []
    if out is not None or html is not None:
        from recsys_cli.insights.report import MODEL_SPECS, render

        written = render(ins, out, html, specs=MODEL_SPECS, heading="Model report")
        for line in written_lines(ins, written, out, html):
            typer.echo(line, err=True)
    emit_insights(ins, out_fmt, written, render_model_summary, console_out())
