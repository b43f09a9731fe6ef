"""A processed dataset's summary as rich tables for a person (`recsys preprocess`, `recsys info DATASET`)."""

from __future__ import annotations

from typing import Any


def _bar(count: int, largest: int, width: int = 30) -> str:
    n = round(width * count / largest) if largest else 0
    return "█" * n + ("▏" if count and n == 0 else "")


def render_summary(meta: dict[str, Any], console) -> None:
    """Print a dataset.json as a person-friendly summary: counts, histogram, genres, splits."""
    from rich.table import Table

    from recsys_cli.output import fit_table

    console.print(f"[bold]{meta['name']}[/bold]  layout {meta.get('layout')}  from {meta.get('source')}")
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold")
    facts.add_column(justify="right")
    lo, hi = meta.get("rating_scale", [None, None])
    rows = [
        ("ratings", f"{meta['n_ratings']:,}"),
        ("users", f"{meta['n_users']:,}"),
        ("items", f"{meta['n_items']:,} ({meta.get('n_rated_items', 0):,} rated)"),
        ("density", f"{100 * meta.get('density', 0):.3f} %"),
        ("rating scale", f"{lo:g} .. {hi:g} step {meta.get('rating_step', 1):g}"),
        ("duplicates resolved", f"{meta.get('duplicates_resolved', 0):,}"),
        ("demographics", "yes" if meta.get("has_users") else "no"),
        ("tags", f"{meta.get('n_tags', 0):,}" if meta.get("has_tags") else "no"),
        ("fingerprint", str(meta.get("fingerprint", ""))[:23] + "…"),
        ("created", str(meta.get("created", ""))),
    ]
    for key, value in rows:
        facts.add_row(key, value)
    console.print(fit_table(facts, console.width))

    hist = meta.get("rating_histogram", {})
    total, largest = sum(hist.values()) or 1, max(hist.values(), default=0)
    chart = Table(title="ratings", title_justify="left", show_header=False, box=None)
    for justify in ("right", "left", "right", "right"):
        chart.add_column(justify=justify)
    for value, count in hist.items():
        chart.add_row(value, _bar(count, largest), f"{count:,}", f"{100 * count / total:.1f} %")
    console.print(fit_table(chart, console.width))

    from recsys_cli.data.readers import NO_GENRES

    # ml-100k's "unknown" flag is the absence of a genre (as `insights` and the models read it): not counted
    genres = [(g, n) for g, n in meta.get("genres", {}).items() if g not in NO_GENRES]
    if genres:
        g_table = Table(title=f"top genres (of {len(genres)})", title_justify="left", show_header=False, box=None)
        g_table.add_column()
        g_table.add_column(justify="right")
        for genre, n in sorted(genres, key=lambda kv: -kv[1])[:10]:
            g_table.add_row(genre, f"{n:,} items")
        console.print(fit_table(g_table, console.width))

    splits = meta.get("splits", {})
    if splits:
        s_table = Table(title="splits", title_justify="left")
        for col in ("name", "kind", "parts"):
            s_table.add_column(col)
        for name, info in splits.items():
            counts = info.get("counts", {})
            parts = "  ".join(
                f"{k} {v:,}" if isinstance(v, int) else f"{k} {'/'.join(f'{x:,}' for x in v)}" for k, v in counts.items()
            )
            s_table.add_row(name, str(info.get("kind", "")), parts)
        console.print(fit_table(s_table, console.width))
    else:
        console.print("splits: none (make one with `recsys split`)")
