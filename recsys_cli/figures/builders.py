"""One builder per chart: a tidy table (polars DataFrame) in, a themed matplotlib Figure out.

A builder reads only its table's columns (documented on each), never the raw data, so the
figure shows exactly the numbers exported beside it. Titles say what is shown, axes carry
units. Render with `recsys_cli.figures.render.save` / `svg_text`.
"""

from __future__ import annotations

import math

import numpy as np

from recsys_cli.figures.render import DIVERGING, PALETTE, SEQUENTIAL, new_figure, themed

BLUE, ORANGE, GREEN = PALETTE[0], PALETTE[1], PALETTE[2]
GREY = "#888888"  # what did not finish (pruned, failed trials)


def _percent_axis(ax, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, decimals=0))


def _thousands(ax, axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def _short(text: str, width: int = 38) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@themed
def rating_distribution(table):
    """rating, ratings, share -> bars of the share of ratings at each value."""
    fig, ax = new_figure()
    values = [f"{v:g}" for v in table["rating"].to_list()]
    bars = ax.bar(values, table["share"].to_list(), color=BLUE)
    for bar, n in zip(bars, table["ratings"].to_list(), strict=True):
        ax.annotate(f"{n:,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=9, xytext=(0, 2), textcoords="offset points")
    _percent_axis(ax)
    ax.grid(axis="x", visible=False)
    ax.set(title="Rating distribution", xlabel="rating (stars)", ylabel="share of ratings")
    return fig


@themed
def activity(table):
    """entity, bin, entities -> bars of users and items per power-of-two band of ratings."""
    entities = [e for e in ("user", "item") if e in set(table["entity"].to_list())]
    fig, axes = new_figure(1, len(entities), squeeze=False)
    for ax, entity, color in zip(axes[0], entities, (BLUE, ORANGE), strict=False):
        part = table.filter(table["entity"] == entity)
        ax.bar(part["bin"].to_list(), part["entities"].to_list(), color=color)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(axis="x", visible=False)
        _thousands(ax)
        ax.set(title=f"Ratings per {entity}", xlabel=f"ratings per {entity} (band)", ylabel=f"{entity}s")
    return fig


@themed
def long_tail(table):
    """entity, entity_share, cumulative_share -> concentration curves (most-rated first) against equality."""
    fig, ax = new_figure(size=(6.5, 4.5))
    for entity, color in (("item", ORANGE), ("user", BLUE)):
        part = table.filter(table["entity"] == entity)
        if part.is_empty():
            continue
        x = np.concatenate([[0.0], part["entity_share"].to_numpy()])
        y = np.concatenate([[0.0], part["cumulative_share"].to_numpy()])
        top10 = float(np.interp(0.1, x, y))
        ax.plot(x, y, color=color, linewidth=2, label=f"{entity}s (top 10% hold {top10:.0%})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="every one equal")
    ax.axvline(0.1, color="grey", linewidth=0.8, linestyle=":")
    _percent_axis(ax, "x")
    _percent_axis(ax, "y")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title="Long tail: how concentrated the ratings are",
           xlabel="share of users / items, most ratings first", ylabel="cumulative share of ratings")
    ax.legend(loc="lower right")
    return fig


@themed
def top_items(table, *, value: str = "ratings", title: str = "Most-rated movies", n: int = 15):
    """rank, title, year, ratings, <value> -> horizontal bars of the top n by `value`."""
    part = table.sort("rank").head(n)
    fig, ax = new_figure(size=(8, max(3.2, 0.32 * len(part) + 1.4)))
    years = part["year"].to_list() if "year" in part.columns else [None] * len(part)
    labels = [_short(t or "?") + (f" ({y})" if y is not None else "") for t, y in zip(part["title"].to_list(), years, strict=True)]
    vals = part[value].to_list()
    ax.barh(labels[::-1], vals[::-1], color=BLUE if value == "ratings" else ORANGE)
    for k, v in enumerate(vals[::-1]):
        ax.annotate(f"{v:,.0f}" if value == "ratings" else f"{v:.2f}", (v, k), va="center", fontsize=8,
                    xytext=(3, 0), textcoords="offset points")
    if value != "ratings":
        lo = min(vals)
        ax.set_xlim(max(0.0, math.floor((lo - 0.3) * 2) / 2), max(vals) + 0.25)
        xlabel = "damped mean rating (stars; 10 pseudo-ratings at the global mean)"
    else:
        _thousands(ax, "x")
        xlabel = "ratings"
    ax.grid(axis="y", visible=False)
    ax.tick_params(axis="y", labelsize=9)
    ax.set(title=title, xlabel=xlabel)
    return fig


@themed
def genre_popularity(table):
    """genre, ratings, items -> horizontal bars of ratings per genre (a movie counts for each of its genres)."""
    part = table.sort("ratings")
    fig, ax = new_figure(size=(8, max(3.2, 0.3 * len(part) + 1.4)))
    ax.barh(part["genre"].to_list(), part["ratings"].to_list(), color=BLUE)
    for k, (n, items) in enumerate(zip(part["ratings"].to_list(), part["items"].to_list(), strict=True)):
        ax.annotate(f"{items:,} movies", (n, k), va="center", fontsize=8, xytext=(3, 0), textcoords="offset points")
    _thousands(ax, "x")
    ax.grid(axis="y", visible=False)
    ax.set(title="Genre popularity", xlabel="ratings on movies of the genre")
    return fig


@themed
def rating_by_genre(table):
    """genre, mean_rating, ci_low, ci_high -> mean rating per genre with its 95% interval."""
    part = table.drop_nulls("mean_rating").sort("mean_rating")
    fig, ax = new_figure(size=(8, max(3.2, 0.3 * len(part) + 1.4)))
    means = part["mean_rating"].to_numpy()
    err = np.vstack([means - part["ci_low"].to_numpy(), part["ci_high"].to_numpy() - means])
    ax.errorbar(means, part["genre"].to_list(), xerr=err, fmt="o", color=BLUE, ecolor=BLUE, capsize=3)
    ax.grid(axis="y", visible=False)
    ax.set(title="Mean rating by genre (95% interval)", xlabel="mean rating (stars)")
    return fig


def _heatmap(ax, matrix, rows, cols, cmap, vmin=None, vmax=None, label=""):
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    bar = ax.figure.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label(label)
    return image


@themed
def genre_cooccurrence(table):
    """genre_a, genre_b, p_b_given_a -> heatmap of P(B | A) in % (rows A, columns B, table order)."""
    genres = list(dict.fromkeys(table["genre_a"].to_list()))
    k = len(genres)
    p = table["p_b_given_a"].to_numpy().reshape(k, k)  # rows genre_a, columns genre_b, as the table is laid out
    fig, ax = new_figure(size=(8.5, 7))
    _heatmap(ax, p * 100, genres, genres, SEQUENTIAL, 0, 100, "P(genre B | genre A) (%)")
    for a in range(k):
        for b in range(k):
            if a != b and np.isfinite(p[a, b]) and p[a, b] >= 0.005:
                ax.text(b, a, f"{100 * p[a, b]:.0f}", ha="center", va="center", fontsize=6.5,
                        color="black" if p[a, b] > 0.6 else "white")
    ax.set(title="Genre co-occurrence: share of genre-A movies that are also genre B", xlabel="genre B", ylabel="genre A")
    return fig


@themed
def release_years(table):
    """year, items, ratings -> movies released per year and ratings they received (two panels)."""
    fig, (top, bottom) = new_figure(2, 1, sharex=True)
    years = table["year"].to_list()
    top.bar(years, table["items"].to_list(), color=BLUE, width=0.9)
    top.set(title="Release years", ylabel="movies")
    bottom.bar(years, table["ratings"].to_list(), color=ORANGE, width=0.9)
    _thousands(bottom)
    bottom.set(xlabel="release year", ylabel="ratings")
    return fig


@themed
def monthly(table):
    """month, ratings, mean_rating -> ratings per month (bars) and their mean rating (line)."""
    fig, (top, bottom) = new_figure(2, 1, sharex=True)
    months = table["month"].to_list()
    x = np.arange(len(months))
    top.bar(x, table["ratings"].to_list(), color=BLUE)
    _thousands(top)
    top.set(title="Ratings over time (UTC months)", ylabel="ratings per month")
    bottom.plot(x, table["mean_rating"].to_list(), color=ORANGE, marker="o", markersize=3)
    bottom.set(ylabel="mean rating (stars)", xlabel="month")
    step = max(1, len(months) // 12)
    bottom.set_xticks(x[::step], months[::step], rotation=45, ha="right", fontsize=8)
    return fig


@themed
def weekday_hour(table):
    """weekday, day, hour, ratings -> heatmap of ratings by weekday (rows) and hour of day (UTC)."""
    part = table.sort("weekday", "hour")
    days = list(dict.fromkeys(part["day"].to_list()))
    grid = part["ratings"].to_numpy().reshape(len(days), 24)
    fig, ax = new_figure(size=(9, 3.8))
    _heatmap(ax, grid, days, [str(h) for h in range(24)], SEQUENTIAL, 0, None, "ratings")
    ax.set_xticks(range(24), [str(h) for h in range(24)], rotation=0, ha="center", fontsize=8)
    ax.set(title="When ratings are made: weekday x hour", xlabel="hour of day (UTC)", ylabel="")
    return fig


@themed
def user_tenure(table):
    """bin, users, share -> users by days between their first and last rating."""
    fig, ax = new_figure(size=(7, 4))
    bars = ax.bar(table["bin"].to_list(), table["users"].to_list(), color=GREEN)
    for bar, s in zip(bars, table["share"].to_list(), strict=True):
        ax.annotate(f"{s:.0%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=9, xytext=(0, 2), textcoords="offset points")
    _thousands(ax)
    ax.grid(axis="x", visible=False)
    ax.set(title="User tenure: first to last rating", xlabel="time between a user's first and last rating",
           ylabel="users")
    return fig


@themed
def segment_lift(table, *, dimension: str = "occupation", alpha: float = 0.05):
    """dimension, segment, genre, lift, significant -> heatmap of log2 lift for one dimension; * = significant."""
    part = table.filter(table["dimension"] == dimension)
    segments = list(dict.fromkeys(part["segment"].to_list()))
    others = part["others"].to_list()[0] if "others" in part.columns and len(part) else "others"
    rows = [f"{s} vs {others}" for s in segments] if others != "others" else segments
    genres = list(dict.fromkeys(part["genre"].to_list()))
    shape = (len(segments), len(genres))
    lift = part["lift"].fill_null(np.nan).to_numpy().reshape(shape)
    sig = part["significant"].to_numpy().reshape(shape)
    tested = part["p_value"].is_not_null().to_numpy().reshape(shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lift = np.log2(lift)
    # Untested cells (too few users or expected ratings) stay blank: their colour would only be noise.
    log_lift = np.clip(np.where(np.isfinite(log_lift) & tested, log_lift, np.nan), -1.5, 1.5)
    fig, ax = new_figure(size=(9, max(3.2, 0.32 * len(segments) + 2.8)))
    ax.set_facecolor("#e8e8e8")
    image = _heatmap(ax, log_lift, rows, genres, DIVERGING, -1.5, 1.5, "lift (segment share / others' share)")
    ticks = [-1.5, -1, -0.5, 0, 0.5, 1, 1.5]
    image.colorbar.set_ticks(ticks, labels=[f"{2**t:.2g}x" for t in ticks])
    for s in range(len(segments)):
        for g in range(len(genres)):
            if sig[s, g]:
                dark = abs(log_lift[s, g]) > 1.0
                ax.text(g, s, f"{lift[s, g]:.2f}*", ha="center", va="center", fontsize=6.5, color="white" if dark else "black")
    names = {"age_band": "age band", "gender": "gender", "occupation": "occupation"}
    ax.set(title=f"Genre preference by {names.get(dimension, dimension)}\n(* = Holm-adjusted p < {alpha:g}; grey = not tested)",
           xlabel="genre", ylabel=names.get(dimension, dimension))
    return fig


@themed
def top_tags(table, n: int = 20):
    """rank, tag, applications -> horizontal bars of the most applied tags."""
    part = table.sort("rank").head(n)
    fig, ax = new_figure(size=(7, max(3.2, 0.3 * len(part) + 1.4)))
    ax.barh([_short(t, 30) for t in part["tag"].to_list()][::-1], part["applications"].to_list()[::-1], color=GREEN)
    _thousands(ax, "x")
    ax.grid(axis="y", visible=False)
    ax.set(title="Most applied tags", xlabel="tag applications")
    return fig


@themed
def abtest(arms, lift, lift_ci, *, alpha: float = 0.05, title: str = ""):
    """A/B test: arms (label, user_ctr_mean, ci_low, ci_high) as bars with intervals; the lift of B over A as a
    bootstrap histogram (lift_low, lift_high, resamples) or a normal curve (lift, density), with lift_ci's interval."""
    fig, (left, right) = new_figure(1, 2, size=(10, 4.2))
    means = arms["user_ctr_mean"].to_numpy()
    err = np.vstack([means - arms["ci_low"].to_numpy(), arms["ci_high"].to_numpy() - means])
    left.bar(arms["label"].to_list(), means, yerr=err, capsize=8, color=[BLUE, ORANGE][: len(arms)])
    _percent_axis(left)
    left.grid(axis="x", visible=False)
    left.set(title="CTR per arm", ylabel=f"per-user CTR ({1 - alpha:.0%} CI)")
    ci = lift_ci.row(0, named=True)
    if "resamples" in lift.columns:
        lo = lift["lift_low"].to_numpy()
        right.bar(lo, lift["resamples"].to_numpy(), width=lift["lift_high"].to_numpy() - lo, align="edge", color="#999999")
        right.set_ylabel("resamples")
    else:
        right.plot(lift["lift"].to_list(), lift["density"].to_list(), color=BLUE)
        right.set_ylabel("density")
    right.axvline(0.0, color="black", linewidth=1)
    for x in (ci["ci_low"], ci["ci_high"]):
        if x is not None and math.isfinite(x):
            right.axvline(x, color=PALETTE[5], linestyle="--")
    right.set(title=f"Lift (B - A), {ci['source']}", xlabel="lift in per-user CTR (B - A)")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# ----------------------------------------------------------------------------- model report (insights RUN)
@themed
def learning_curve(table, *, title: str = "Learning curve"):
    """iteration, series, value -> one line per series (train_rmse, train_auc) over iterations/epochs."""
    series = list(dict.fromkeys(table["series"].to_list()))
    fig, axes = new_figure(1, max(1, len(series)), squeeze=False, size=(8, 4))
    labels = {"train_rmse": "training RMSE", "train_auc": "training AUC (sampled pairs)"}
    for ax, name, color in zip(axes[0], series, PALETTE, strict=False):
        part = table.filter(table["series"] == name).sort("iteration")
        ax.plot(part["iteration"].to_list(), part["value"].to_list(), marker="o", markersize=3, color=color)
        ax.set(xlabel="iteration / epoch", ylabel=labels.get(name, name), title=labels.get(name, name))
    fig.suptitle(title, fontsize=12, fontweight="bold")
    return fig


@themed
def item_map(table, *, separation: float | None = None, shuffled: float | None = None, variance: float | None = None,
             projection: str = "pca", items: int | None = None, map_separation: float | None = None,
             map_shuffled: float | None = None, genres: int = 7):
    """item_id, genre, ratings, x, y -> scatter of the items' 2-D projection, the most common first genres in colour.

    The title names the projection (pca, tsne, umap), how many of `items` rated items are shown, the
    variance PCA keeps, and the genre silhouette on the map and in the factor space (each with its
    shuffled-genre chance level).
    """
    from recsys_cli.insights.projection import AXES, LABELS

    fig, ax = new_figure(size=(8, 6))
    counts = table.drop_nulls("genre").group_by("genre").len().sort(["len", "genre"], descending=[True, False])
    shown = counts["genre"].head(genres).to_list()
    rest = table.filter(~table["genre"].is_in(shown) | table["genre"].is_null())
    size = lambda part: 4 + 30 * np.sqrt(part["ratings"].to_numpy() / max(1, table["ratings"].max()))  # noqa: E731
    # Points rasterised (axes, labels and text stay vector): thousands of dots would make a megabyte SVG.
    ax.scatter(rest["x"].to_list(), rest["y"].to_list(), s=size(rest), color="#c8c8c8", alpha=0.6, linewidths=0,
               label="other genres", rasterized=True)
    for genre, color in zip(shown, PALETTE, strict=False):
        part = table.filter(table["genre"] == genre)
        ax.scatter(part["x"].to_list(), part["y"].to_list(), s=size(part), color=color, alpha=0.75, linewidths=0,
                   label=f"{genre} ({len(part)})", rasterized=True)
    ax.legend(loc="best", fontsize=8, markerscale=1.5, title="first genre", title_fontsize=8)
    head = LABELS.get(projection, projection)
    if variance is not None and projection == "pca":
        head += f", {variance:.0%} of the variance"
    if items is not None and items > len(table):
        head += f", {len(table):,} of {items:,} rated items (evenly spaced)"
    sil, chance = [], []
    for where, value, base in (("map", map_separation, map_shuffled), ("factors", separation, shuffled)):
        if value is not None:
            sil.append(f"{where} {value:+.3f}")
            if base is not None:
                chance.append(f"{base:+.3f}")
    sub = ""
    if sil:
        sub = "\ngenre silhouette: " + ", ".join(sil) + (f" (shuffled: {', '.join(chance)})" if chance else "")
    xlabel, ylabel = AXES.get(projection, ("axis 1", "axis 2"))
    ax.set(title=f"Item factors in 2-D: {head}{sub}", xlabel=xlabel, ylabel=ylabel)
    return fig


@themed
def popularity_bias(table):
    """group, long_tail_share -> bars: the long tail's share of the catalogue, of the ratings and of the top-k slots."""
    fig, ax = new_figure(size=(7, 4))
    shares = table["long_tail_share"].to_list()
    bars = ax.bar(table["group"].to_list(), shares, color=[GREEN, BLUE, ORANGE][: len(table)])
    for bar, v in zip(bars, shares, strict=True):
        ax.annotate(f"{v:.1%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=9, xytext=(0, 2), textcoords="offset points")
    _percent_axis(ax)
    ax.grid(axis="x", visible=False)
    ax.set(title="Long tail: items outside the most-rated 20%", ylabel="long-tail share")
    return fig


@themed
def segment_ndcg(table, *, k: int = 10):
    """family, segment, users, ndcg, sem -> horizontal bars of nDCG@k per segment with +-1.96 sem, grouped by family."""
    rows = table.reverse()
    labels = [f"{f}: {s} ({n:,})" if f != "all" else f"all users ({n:,})"
              for f, s, n in zip(rows["family"].to_list(), rows["segment"].to_list(), rows["users"].to_list(), strict=True)]
    fig, ax = new_figure(size=(8, max(3.2, 0.26 * len(rows) + 1.4)))
    families = list(dict.fromkeys(table["family"].to_list()))
    colors = [PALETTE[families.index(f) % len(PALETTE)] for f in rows["family"].to_list()]
    ax.barh(labels, rows["ndcg"].to_list(), xerr=1.96 * rows["sem"].to_numpy(), color=colors, capsize=2)
    overall = table.filter(table["family"] == "all")["ndcg"].to_list()
    if overall:
        ax.axvline(overall[0], color="black", linewidth=0.8, linestyle="--")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", visible=False)
    ax.set(title=f"nDCG@{k} by user segment (95% interval)", xlabel=f"nDCG@{k} on the held-out ratings")
    return fig


# ----------------------------------------------------------------------------- tune and benchmark (--plot)
@themed
def tune_trials(table, *, metric: str = "score", lower_is_better: bool = True):
    """trial, score[, std, pruned_score, failed] -> each trial's score (with its CV spread) in order and the best
    so far; pruned trials as hollow marks at the mean of the folds they ran, failed ones as crosses on the axis."""
    fig, ax = new_figure(size=(8, 4))
    part = table.drop_nulls("score").sort("trial")
    from matplotlib.ticker import MaxNLocator

    x, y = part["trial"].to_numpy(), part["score"].to_numpy()
    std = part["std"].fill_null(0.0).to_numpy() if "std" in part.columns else np.zeros(len(y))
    ax.errorbar(x, y, yerr=std, fmt="o", color=BLUE, markersize=4, capsize=2, label="trial (+-1 sd over folds)",
                zorder=3)
    if "pruned_score" in table.columns:
        cut = table.drop_nulls("pruned_score").sort("trial")
        if len(cut):
            ax.plot(cut["trial"].to_numpy(), cut["pruned_score"].to_numpy(), "o", markerfacecolor="none",
                    color=GREY, markersize=5, label="pruned (mean of the folds it ran)", zorder=2)
    if "failed" in table.columns:
        lost = table.filter(table["failed"] & table["score"].is_null()
                            & (table["pruned_score"].is_null() if "pruned_score" in table.columns else True))
        if len(lost):
            ax.plot(lost["trial"].to_numpy(), np.zeros(len(lost)), "x", color=GREY, markersize=6, clip_on=False,
                    transform=ax.get_xaxis_transform(), label="failed (no score)", zorder=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(y):
        best = np.minimum.accumulate(y) if lower_is_better else np.maximum.accumulate(y)
        ax.step(x, best, where="post", color=ORANGE, label="best so far")
        k = int(np.argmin(y) if lower_is_better else np.argmax(y))
        ax.annotate(f"best {y[k]:.4f}", (x[k], y[k]), xytext=(4, 6), textcoords="offset points", fontsize=8)
    ax.legend(fontsize=8)
    ax.set(title=f"Tuning: {metric} per trial ({'lower' if lower_is_better else 'higher'} is better)",
           xlabel="trial", ylabel=metric)
    return fig


@themed
def benchmark_ratios(table):
    """measure, ratio -> horizontal bars of ours / peer ratios on a log scale (1 = parity; < 1: ours is smaller)."""
    part = table.drop_nulls("ratio").filter(table.drop_nulls("ratio")["ratio"] > 0).sort("ratio")
    fig, ax = new_figure(size=(8, max(3.2, 0.3 * len(part) + 1.4)))
    vals = part["ratio"].to_numpy()
    ax.barh([_short(m, 48) for m in part["measure"].to_list()], vals,
            color=[GREEN if v <= 1 else ORANGE for v in vals])
    for k, v in enumerate(vals):
        ax.annotate(f"{v:.2f}x", (v, k), va="center", fontsize=8, xytext=(3, 0), textcoords="offset points")
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", visible=False)
    ax.set(title="Benchmark: ours / peer (time and memory: < 1 is better)", xlabel="ratio (log scale)")
    return fig


@themed
def bandit_allocation(table, *, policy: str = "", best: str | None = None):
    """period, first_round, last_round, arm, share -> stacked bars of each arm's share of users per period."""
    periods = list(dict.fromkeys(table["period"].to_list()))
    bounds = dict(zip(table["period"].to_list(), zip(table["first_round"].to_list(), table["last_round"].to_list(),
                                                      strict=True), strict=True))
    labels = [f"{bounds[p][0]}" if bounds[p][0] == bounds[p][1] else f"{bounds[p][0]}-{bounds[p][1]}" for p in periods]
    arms = list(dict.fromkeys(table["arm"].to_list()))
    fig, ax = new_figure(size=(9, 4.2))
    bottom = np.zeros(len(periods))
    for arm, color in zip(arms, PALETTE, strict=False):
        part = table.filter(table["arm"] == arm)
        share = dict(zip(part["period"].to_list(), part["share"].to_list(), strict=True))
        vals = np.array([share.get(p, 0.0) for p in periods])
        ax.bar(labels, vals, bottom=bottom, color=color, label=arm + (" (best)" if arm == best else ""))
        bottom += vals
    if len(arms):
        ax.axhline(1.0 / len(arms), color="black", linewidth=0.8, linestyle="--", label="equal split")
    _percent_axis(ax)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set(title=f"Bandit allocation over rounds{f' ({policy})' if policy else ''}", ylabel="share of arriving users",
           xlabel="round")
    return fig
