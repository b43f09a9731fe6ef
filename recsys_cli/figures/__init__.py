"""Figures, defined once: `builders` turns a tidy table into a matplotlib figure, `render` writes it.

Why matplotlib alone: one library draws each figure once and writes the PNG, the SVG and
(inlined SVG) the HTML report, so the report needs no script, no CDN and no vendored
runtime, and is offline by construction. Builders run on the non-interactive Agg backend
inside one theme (colour-blind-safe Okabe-Ito palette, viridis / PuOr maps, units on axes).
matplotlib is the optional `plot` extra; `render.require_matplotlib` names the install command.
Used by insights (recsys_cli.insights.report) and `recsys abtest --plot`.
"""
