"""Figures and the offline HTML report of an `Insights`: each figure built once, from its table.

`--out DIR` gets NAME.png and NAME.svg per figure, NAME.csv per table and insights.json;
`--html FILE` gets one self-contained page: the figures as embedded SVG images (data: URIs),
every table beside its figure, no script and no external reference of any kind.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from recsys_cli.insights.build import Insights

HTML_ROWS = 1000  # rows of a table shown in the report (the CSV/JSON exports have all)
PLAIN = {"year", "rank", "hour", "weekday", "low", "high", "low_days", "high_days"}  # numbers without a thousands separator


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem
    table: str  # the Insights table it is built from
    builder: str  # function in recsys_cli.figures.builders
    caption: str
    kwargs: dict = field(default_factory=dict)
    summary_kwargs: dict = field(default_factory=dict)  # builder keyword -> key of insights.summary


SPECS = (
    FigureSpec("rating_distribution", "rating_distribution", "rating_distribution", "How ratings spread over the scale."),
    FigureSpec("activity", "activity", "activity", "Users and items by how many ratings they have (power-of-two bands)."),
    FigureSpec("long_tail", "long_tail", "long_tail",
               "Cumulative share of ratings held by the most active users / most rated items (the further above the diagonal, the longer the tail)."),
    FigureSpec("top_items_by_count", "top_items_by_count", "top_items", "Most-rated movies.",
               {"value": "ratings", "title": "Most-rated movies"}),
    FigureSpec("top_items_by_damped_mean", "top_items_by_damped_mean", "top_items",
               "Best-rated movies by damped mean: (sum + 10 x global mean) / (n + 10), so a few 5-star ratings do not win.",
               {"value": "damped_mean", "title": "Best-rated movies (damped mean)"}),
    FigureSpec("genre_popularity", "genres", "genre_popularity", "Ratings per genre; a movie counts for each of its genres."),
    FigureSpec("rating_by_genre", "genres", "rating_by_genre",
               "Mean rating per genre with a normal 95% interval (ratings taken as independent: descriptive only)."),
    FigureSpec("genre_cooccurrence", "genre_cooccurrence", "genre_cooccurrence",
               "P(genre B | genre A) over the catalogue: of the movies with genre A (row), the % that also have genre B (column)."),
    FigureSpec("release_years", "release_years", "release_years", "Movies per release year and the ratings they received."),
    FigureSpec("monthly", "monthly", "monthly", "Ratings per calendar month (UTC) and their mean rating."),
    FigureSpec("weekday_hour", "weekday_hour", "weekday_hour", "Ratings by weekday and hour of day (UTC)."),
    FigureSpec("user_tenure", "user_tenure", "user_tenure", "Days between a user's first and last rating."),
    FigureSpec("segment_lift_age_band", "segment_lift", "segment_lift",
               "Share of a user's ratings on each genre, segment vs everyone else (lift; * = significant after Holm correction).",
               {"dimension": "age_band"}),
    FigureSpec("segment_lift_gender", "segment_lift", "segment_lift",
               "Women vs men: lift of the share of a user's ratings on each genre (* = significant after Holm correction).",
               {"dimension": "gender"}),
    FigureSpec("segment_lift_occupation", "segment_lift", "segment_lift",
               "Share of a user's ratings on each genre, occupation vs everyone else (lift; * = significant after Holm correction).",
               {"dimension": "occupation"}),
    FigureSpec("top_tags", "top_tags", "top_tags", "Most applied tags (lower-cased, whitespace collapsed)."),
)


MODEL_SPECS = (
    FigureSpec("learning_curve", "learning_curve", "learning_curve",
               "Training loss per iteration or epoch, as the model recorded it while fitting."),
    FigureSpec("item_map", "item_map", "item_map",
               "Item factors in two dimensions, coloured by each movie's first genre (dot size: ratings): the first "
               "two principal components by default, t-SNE or UMAP with --projection (named in the title, with how "
               "many items it shows). Genre silhouette: per genre, its movies against all others, averaged over "
               "genres, on the map (distance between the dots) and in the full factor space (cosine distance); "
               "shuffled: the same for random sets of movies. t-SNE and UMAP keep neighbourhoods, not distances: "
               "their clusters look tighter than the factors are.",
               summary_kwargs={"separation": "genre_separation", "shuffled": "genre_separation_shuffled",
                               "variance": "item_map_variance", "projection": "item_map_projection",
                               "items": "item_map_rated", "map_separation": "item_map_separation",
                               "map_shuffled": "item_map_separation_shuffled"}),
    FigureSpec("popularity_bias", "popularity_bias", "popularity_bias",
               "Share of the long tail (rated items outside the most-rated 20%) in the catalogue, in the training "
               "ratings and in every user's top-k list."),
    FigureSpec("segment_ndcg", "segment_ndcg", "segment_ndcg",
               "nDCG on the run's held-out ratings per user segment (dashed: all users)."),
)


def figure_specs(insights: Insights, specs=SPECS) -> list[FigureSpec]:
    """The figures this dataset (or run) supports (their table exists and has rows)."""
    out = []
    for spec in specs:
        table = insights.tables.get(spec.table)
        if table is None or table.is_empty():
            continue
        if "dimension" in spec.kwargs and spec.kwargs["dimension"] not in set(table["dimension"].to_list()):
            continue
        out.append(spec)
    return out


def build_figures(insights: Insights, specs=SPECS) -> Iterator[tuple[FigureSpec, object]]:
    """(spec, matplotlib Figure) for every supported figure; close each after use."""
    from recsys_cli.figures import builders

    for spec in figure_specs(insights, specs):
        kwargs = dict(spec.kwargs)
        kwargs.update({k: insights.summary[v] for k, v in spec.summary_kwargs.items() if v in insights.summary})
        if spec.builder == "segment_lift":
            kwargs["alpha"] = insights.summary.get("alpha", 0.05)
        yield spec, getattr(builders, spec.builder)(insights.tables[spec.table], **kwargs)


def render(insights: Insights, out_dir: Path | None = None, html_path: Path | None = None,
           formats=("png", "svg"), *, specs=SPECS, heading: str = "Dataset insights") -> list[Path]:
    """Write figures + tables to out_dir and/or the HTML report; every figure is drawn once. Returns the paths written.

    Everything is drawn first and then written with `write_all_atomic`: Ctrl-C while drawing, or a failure
    while writing (a full disk), replaces none of the files, and no file is ever half-written.
    """
    from recsys_cli.figures import render as rd
    from recsys_cli.output import dumps

    files: list[tuple[Path, bytes]] = []
    svgs: dict[str, str] = {}
    for spec, fig in build_figures(insights, specs):
        try:
            drawn = {}  # each format drawn once: the SVG file and the report's image are the same bytes
            for fmt in (*(formats if out_dir is not None else ()), *(("svg",) if html_path is not None else ())):
                if fmt not in drawn:
                    drawn[fmt] = rd.to_bytes(fig, fmt)
            if out_dir is not None:
                for fmt in formats:
                    files.append((Path(out_dir) / f"{spec.name}.{fmt}", drawn[fmt]))
            if html_path is not None:
                svgs[spec.name] = drawn["svg"].decode("utf-8")
        finally:
            rd.close(fig)
    if out_dir is not None:
        for name, table in insights.tables.items():
            files.append((Path(out_dir) / f"{name}.csv", csv_text(table).encode("utf-8")))
        files.append((Path(out_dir) / "insights.json", (dumps(insights.to_dict()) + "\n").encode("utf-8")))
    if html_path is not None:
        files.append((Path(html_path), html_report(insights, svgs, specs=specs, heading=heading).encode("utf-8")))
    return rd.write_all_atomic(files)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1000px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .2em 1.5em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .95em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: .15em .5em; text-align: right; } th { background: #f4f4f4; }
td.text { text-align: left; } details { margin: .4em 0; } summary { cursor: pointer; color: #0072B2; }
li { margin: .3em 0; }
"""


def csv_text(table) -> str:
    """The table as CSV; a column of mixed Python values (a run's hyperparameters) is written as JSON text."""
    import json

    import polars as pl

    mixed = [c for c, t in table.schema.items() if t == pl.Object]
    if mixed:
        table = table.with_columns(pl.Series(c, [json.dumps(v) if not isinstance(v, str) else v
                                                 for v in table[c].to_list()], pl.String) for c in mixed)
    return table.write_csv()


def _cell(value, column: str = "") -> tuple[str, str]:
    if value is None:
        return "", ""
    if isinstance(value, int) and not isinstance(value, bool) and (column in PLAIN or column.endswith("_id")):
        return str(value), ""
    if isinstance(value, float):
        return (f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"), ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), ""
    if isinstance(value, int):
        return f"{value:,}", ""
    if isinstance(value, list):
        return html.escape(", ".join(map(str, value))), "text"
    return html.escape(str(value)), "text"


def _table_html(name: str, table) -> str:
    rows = table.head(HTML_ROWS).iter_rows()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in rows:
        cells = []
        for column, v in zip(table.columns, row, strict=True):
            text, cls = _cell(v, column)
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f" (first {HTML_ROWS} of {len(table):,} rows)" if len(table) > HTML_ROWS else f" ({len(table):,} rows)"
    return (f"<details><summary>table <code>{html.escape(name)}</code>{more}</summary>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></details>")


def _fact(key: str, value) -> str:
    if isinstance(value, float):
        text = f"{value:.1%}" if ("share" in key or key == "sparsity") else f"{value:.3f}"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    label = key.replace("pct", "%").replace("_", " ")
    return f"<dt>{html.escape(label)}</dt><dd>{html.escape(text)}</dd>"


def html_report(insights: Insights, svgs: dict[str, str], *, specs=SPECS, heading: str = "Dataset insights") -> str:
    """One offline page: key numbers, segment findings, each figure (SVG data URI) with its table."""
    name = html.escape(insights.dataset)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>recsys insights: {name}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(heading)}: {name}</h1>", "<h2>Key numbers</h2><dl class=\"facts\">",
             *(_fact(k, v) for k, v in insights.summary.items()), "</dl>"]
    if "segment_lift" in insights.tables:
        alpha = insights.summary.get("alpha", 0.05)
        parts.append(f"<h2>Segment findings</h2><p>Per-user share of ratings on a genre, segment vs the rest: "
                     f"Welch t-tests, Holm-adjusted over {insights.summary.get('segment_tests', 0):,} tests; a finding "
                     f"is listed only when the adjusted p is below {alpha:g}.</p>")
        items = "".join(f"<li>{html.escape(s)}</li>" for s in insights.statements)
        parts.append(f"<ul>{items}</ul>" if items else "<p>No segment difference survives the correction.</p>")
    elif insights.statements:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in insights.statements) + "</ul>")
    shown: set[str] = set()
    parts.append("<h2>Figures</h2>")
    for spec in figure_specs(insights, specs):
        if spec.name not in svgs:
            continue
        data = base64.b64encode(svgs[spec.name].encode("utf-8")).decode("ascii")
        parts.append(f"<figure id=\"{spec.name}\"><img alt=\"{html.escape(spec.caption)}\" "
                     f"src=\"data:image/svg+xml;base64,{data}\"><figcaption>{html.escape(spec.caption)}</figcaption>")
        if spec.table not in shown:
            parts.append(_table_html(spec.table, insights.tables[spec.table]))
            shown.add(spec.table)
        parts.append("</figure>")
    rest = [n for n in insights.tables if n not in shown]
    if rest:
        parts.append("<h2>More tables</h2>")
        parts.extend(_table_html(n, insights.tables[n]) for n in rest)
    parts.append("</body></html>\n")
    return "\n".join(parts)
