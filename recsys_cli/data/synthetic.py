"""MovieLens-shaped synthetic ratings with a planted, known structure.

`generate(name, ...)` writes data/raw/NAME/{ratings.csv, movies.csv, generate.json} in the CSV
layout of ml-25m, so `recsys preprocess NAME` treats it like any release. The truth:

- item popularity is Zipf-like (weight (rank + 40)^-1.3) and user activity Pareto-tailed with a
  floor of `min_per_user` ratings;
- rating = mean + user bias + item bias + <user factors, item factors> + Gaussian noise, rounded
  to the rating step (some users never use half stars) and clipped to the scale;
- each of the 19 MovieLens genres has a direction in factor space; an item gets the genres its
  factors align with best, and users pick items partly by genre taste (so *which* items a user
  rates carries signal too, not only the values);
- each user rates distinct items over an activity window whose length grows with activity.

Generation runs in chunks of users (bounded memory) and is deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import shutil
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cli import settings
from recsys_cli.errors import UsageError

GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")
# Approximate number of ml-25m movies per genre: the prior that shapes genre frequencies.
GENRE_PRIOR = (7348, 4145, 2929, 2935, 16870, 5319, 5605, 25606, 2731, 353, 5989, 195, 1054,
               2925, 7719, 3595, 8654, 1874, 1399)
ZIPF_EXPONENT, ZIPF_OFFSET = 1.3, 40.0
ACTIVITY_TAIL = 1.6  # Pareto shape of user activity
POPULARITY_SHARE = 0.5  # share of picks by popularity alone; the rest by genre taste
TASTE_STRENGTH = 2.0
CHUNK_RATINGS = 1_000_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Spec:
    """Everything that determines the generated files."""

    n_users: int
    n_items: int
    n_ratings: int
    rating_scale: tuple[float, float] = (0.5, 5.0)
    rating_step: float = 0.5
    start: str = "1996-01-01"
    end: str = "2020-01-01"
    factors: int = 8
    noise: float = 0.5
    min_per_user: int = 20
    seed: int = 42
    global_mean: float = 3.55
    user_bias_std: float = 0.45
    item_bias_std: float = 0.45
    factor_std: float = 0.8  # std of the planted dot product


PRESETS: dict[str, Spec] = {
    # Intercepts calibrated so the generated mean rating is near the real release's (3.53, 3.58, 3.51 ...).
    "ml-100k": Spec(943, 1682, 100_000, (1.0, 5.0), 1.0, "1997-09-20", "1998-04-23", global_mean=3.52),
    "ml-1m": Spec(6040, 3706, 1_000_209, (1.0, 5.0), 1.0, "2000-04-25", "2003-02-28", global_mean=3.62),
    "ml-10m": Spec(69878, 10677, 10_000_054, (0.5, 5.0), 0.5, "1996-01-29", "2009-01-05"),
    "ml-25m": Spec(162541, 59047, 25_000_095, (0.5, 5.0), 0.5, "1995-01-09", "2019-11-21"),
    "ml-32m": Spec(200948, 84432, 32_000_204, (0.5, 5.0), 0.5, "1995-01-09", "2023-10-12"),
}


def make_spec(*, preset: str | None = None, n_ratings: int | None = None, n_users: int | None = None,
              n_items: int | None = None, factors: int = 8, noise: float = 0.5, seed: int = 42,
              min_per_user: int | None = None) -> Spec:
    """Resolve a preset and explicit sizes (explicit ones win) into a checked Spec."""
    from recsys_cli.settings import check_seed

    seed = check_seed(seed)
    sizes = {"n_ratings": n_ratings, "n_users": n_users, "n_items": n_items}
    if preset is None:
        missing = [k for k, v in sizes.items() if v is None]
        if len(missing) == 3:
            preset = "ml-100k"
        elif missing:
            flags = ", ".join("--" + k[2:] for k in missing)
            raise UsageError(f"give --preset or all of --ratings, --users, --items (missing {flags})")
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset] if preset else Spec(1, 1, 1)
    spec = replace(base, **{k: int(v) for k, v in sizes.items() if v is not None},
                   factors=int(factors), noise=float(noise), seed=int(seed))
    if spec.n_users < 1 or spec.n_items < 1 or spec.n_ratings < spec.n_users:
        raise UsageError("need users >= 1, items >= 1 and at least one rating per user (ratings >= users)")
    if spec.n_ratings > spec.n_users * spec.n_items:
        raise UsageError(f"{spec.n_ratings} ratings do not fit {spec.n_users} users x {spec.n_items} items")
    if spec.factors < 1 or spec.noise < 0:
        raise UsageError("need factors >= 1 and noise >= 0")
    floor = min(20, spec.n_ratings // spec.n_users, spec.n_items)
    mpu = floor if min_per_user is None else int(min_per_user)
    if mpu < 1 or mpu > spec.n_items or mpu * spec.n_users > spec.n_ratings:
        raise UsageError(f"--min-per-user {mpu} is impossible with {spec.n_users} users, {spec.n_items} items "
                         f"and {spec.n_ratings} ratings")
    return replace(spec, min_per_user=mpu)


def _epoch(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp())


def user_counts(rng: np.random.Generator, spec: Spec) -> np.ndarray:
    """Ratings per user: floor min_per_user plus a Pareto-tailed share, capped, summing exactly to n_ratings."""
    n, lo = spec.n_users, spec.min_per_user
    cap = min(spec.n_items, max(math.ceil(0.6 * spec.n_items), math.ceil(1.5 * spec.n_ratings / n), lo))
    extra, room = spec.n_ratings - n * lo, cap - lo
    w = rng.pareto(ACTIVITY_TAIL, n) + 1e-3
    a, b = 0.0, (extra + 1.0) / w.min()  # water-filling level: sum(min(level * w, room)) == extra
    for _ in range(200):
        mid = (a + b) / 2
        a, b = (mid, b) if np.minimum(mid * w, room).sum() <= extra else (a, mid)
    x = np.minimum(a * w, room)
    counts = np.floor(x).astype(np.int64)
    frac = x - counts
    while (short := extra - int(counts.sum())) > 0:  # hand out the remainder by largest fraction
        open_ = np.flatnonzero(counts < room)
        pick = open_[np.argsort(-frac[open_], kind="stable")[:short]]
        counts[pick] += 1
        frac[pick] = 0.0
    return counts + lo


class _Truth:
    """The planted model: factors, biases, popularity, genres and user habits."""

    def __init__(self, rng: np.random.Generator, spec: Spec) -> None:
        k, nu, ni = spec.factors, spec.n_users, spec.n_items
        scale = (spec.factor_std**2 / k) ** 0.25  # iid N(0, scale^2) entries give dot std factor_std
        self.P = rng.normal(0.0, scale, (nu, k))
        self.Q = rng.normal(0.0, scale, (ni, k))
        rank = rng.permutation(ni)
        self.pop = (rank + ZIPF_OFFSET) ** -ZIPF_EXPONENT
        logpop = np.log(self.pop)
        z = (logpop - logpop.mean()) / (logpop.std() or 1.0)
        self.bu = rng.normal(0.0, spec.user_bias_std, nu)
        self.bi = rng.normal(0.0, spec.item_bias_std, ni) + 0.15 * z  # popular films rate a bit higher
        self.bi -= self.bi @ self.pop / self.pop.sum()  # ... without lifting the mean of what gets rated
        dirs = rng.normal(size=(len(GENRES), k))
        self.dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        qn = self.Q / np.linalg.norm(self.Q, axis=1, keepdims=True)
        score = qn @ self.dirs.T + 0.15 * np.log(np.asarray(GENRE_PRIOR, dtype=float))
        n_genres = rng.choice(5, size=ni, p=[0.42, 0.33, 0.17, 0.06, 0.02]) + 1
        by_score = np.argsort(-score, axis=1, kind="stable")
        self.genres = np.zeros((ni, len(GENRES)), dtype=bool)
        rows = np.repeat(np.arange(ni), n_genres)
        rank_in_item = np.arange(len(rows)) - np.repeat(np.cumsum(n_genres) - n_genres, n_genres)
        cols = by_score[rows, rank_in_item]
        self.genres[rows, cols] = True
        self.primary = by_score[:, 0]
        self.item_age = np.floor(rng.exponential(6.0, ni)).astype(np.int64)
        t0, t1 = _epoch(spec.start), _epoch(spec.end)
        self.user_start = rng.integers(t0, t1 - 3600, nu)
        self.half_stars = rng.random(nu) < (0.7 if spec.rating_step == 0.5 else 0.0)
        self.t_end = t1
        self._sampling_tables()

    def _sampling_tables(self) -> None:
        g = len(GENRES)
        self.cdf_all = np.cumsum(self.pop) / self.pop.sum()
        self.cdf_all[-1] = 1.0
        self.by_genre = np.argsort(self.primary, kind="stable")
        gsorted, wsorted = self.primary[self.by_genre], self.pop[self.by_genre]
        self.genre_weight = np.bincount(self.primary, weights=self.pop, minlength=g)
        within = np.cumsum(wsorted) - np.repeat(np.cumsum(self.genre_weight) - self.genre_weight,
                                                np.bincount(self.primary, minlength=g))
        self.genre_cdf = gsorted + within / self.genre_weight[gsorted]
        last = np.r_[gsorted[1:] != gsorted[:-1], True]
        self.genre_cdf[last] = gsorted[last] + 1.0
        self.last_genre = int(np.flatnonzero(self.genre_weight > 0)[-1])
        self.guide_all, self.guide_genre = _guide(self.cdf_all), _guide(self.genre_cdf)

    def taste(self, users: np.ndarray) -> np.ndarray:
        """Per user, unnormalised weight of picking by each genre: W_g * exp(beta * cos(p_u, d_g))."""
        pn = self.P[users] / np.linalg.norm(self.P[users], axis=1, keepdims=True)
        return self.genre_weight * np.exp(TASTE_STRENGTH * (pn @ self.dirs.T))

    def draw(self, rng: np.random.Generator, taste_cdf: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """One item per entry of `rows` (chunk-local users), with replacement."""
        n, g = len(rows), taste_cdf.shape[1]
        by_pop = rng.random(n) < POPULARITY_SHARE
        items = _guided_search(self.cdf_all, self.guide_all, rng.random(n))
        flat = (np.arange(len(taste_cdf))[:, None] + taste_cdf).ravel()
        genre = np.searchsorted(flat, rows + rng.random(n), side="right") - rows * g
        pos = _guided_search(self.genre_cdf, self.guide_genre, genre + rng.random(n))
        return np.where(by_pop, items, self.by_genre[pos])

    def log_weights(self, users: np.ndarray) -> np.ndarray:
        """log P(pick item | user) for every item (rows: users), for exact top-ups."""
        t = self.taste(users)
        p = POPULARITY_SHARE * self.pop / self.pop.sum()
        p = p + (1 - POPULARITY_SHARE) * t[:, self.primary] * self.pop / t.sum(axis=1, keepdims=True)
        return np.log(p)


def _guide(cdf: np.ndarray) -> np.ndarray:
    """Bucket table for `_guided_search`: first index with cdf > bucket start, 4 buckets per entry."""
    m = 4 * len(cdf)
    return np.searchsorted(cdf, np.arange(m) * (cdf[-1] / m), side="right")


def _guided_search(cdf: np.ndarray, guide: np.ndarray, x: np.ndarray) -> np.ndarray:
    """np.searchsorted(cdf, x, side="right") for 0 <= x < cdf[-1], ~10x faster on random x:
    start at x's bucket and step forward the few entries that remain."""
    idx = guide[np.minimum((x * (len(guide) / cdf[-1])).astype(np.int64), len(guide) - 1)]
    back = np.flatnonzero((idx > 0) & (cdf[idx - 1] > x))  # float rounding put x one bucket high
    while len(back):
        idx[back] -= 1
        back = back[(idx[back] > 0) & (cdf[idx[back] - 1] > x[back])]
    todo = np.flatnonzero(cdf[idx] <= x)
    while len(todo):
        idx[todo] += 1
        todo = todo[cdf[idx[todo]] <= x[todo]]
    return idx


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def sample_items(rng: np.random.Generator, truth: _Truth, users: np.ndarray,
                 need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per user in pick order: (chunk-local row, item), grouped by row.

    Picks come from a stream with replacement, keeping first occurrences (exact sampling
    without replacement); users still short after two rounds get an exact Gumbel top-k
    over the items they do not have yet.
    """
    ni = len(truth.pop)
    taste = truth.taste(users)
    cdf = np.cumsum(taste, axis=1) / taste.sum(axis=1, keepdims=True)
    cdf[:, truth.last_genre:] = 1.0
    got_r, got_i, got_s = [], [], []
    chosen = np.zeros(0, dtype=np.int64)
    have, seq0 = np.zeros(len(users), dtype=np.int64), 0
    for factor, extra in ((1.2, 8), (3.0, 16)):
        short = need - have
        act = np.flatnonzero(short > 0)
        if len(act) == 0:
            break
        rows = np.repeat(act, np.ceil(short[act] * factor).astype(np.int64) + extra)
        keys = rows * ni + truth.draw(rng, cdf, rows)
        uniq, first = np.unique(keys, return_index=True)
        first = np.sort(first[~_contains(chosen, uniq)])
        fr = rows[first]
        rank = np.arange(len(first)) - np.searchsorted(fr, fr)
        sel = first[rank < short[fr]]
        got_r.append(rows[sel])
        got_i.append(keys[sel] % ni)
        got_s.append(seq0 + sel)
        seq0 += len(rows)
        have += np.bincount(rows[sel], minlength=len(users))
        chosen = np.sort(np.concatenate([chosen, keys[sel]]))
    short_rows = np.flatnonzero(need > have)
    block = max(1, 4_000_000 // ni)
    for b in range(0, len(short_rows), block):
        rws = short_rows[b : b + block]
        score = truth.log_weights(users[rws]) - np.log(-np.log(rng.random((len(rws), ni))))
        ck = chosen[_contains(rws, chosen // ni)] if len(chosen) else chosen
        score[np.searchsorted(rws, ck // ni), ck % ni] = -np.inf
        want = need[rws] - have[rws]
        kmax = int(want.max())
        top = np.argpartition(-score, kmax - 1, axis=1)[:, :kmax]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), axis=1, kind="stable"), 1)
        keep = np.arange(kmax)[None, :] < want[:, None]
        got_r.append(np.broadcast_to(rws[:, None], top.shape)[keep])
        got_i.append(top[keep])
        got_s.append(seq0 + np.broadcast_to(np.arange(kmax), top.shape)[keep])
        seq0 += kmax
    r, i, s = (np.concatenate(x) for x in (got_r, got_i, got_s))
    order = np.argsort(r * (seq0 + 1) + s)
    return r[order], i[order]


def _timestamps(rng: np.random.Generator, truth: _Truth, users: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Increasing times per user: sessions of quick ratings with rare long breaks, over a window
    whose length grows with the user's activity."""
    start = truth.user_start[users]
    span = np.minimum(np.exp(rng.normal(np.log(600.0 * counts), 1.5)), truth.t_end - start)
    n = int(counts.sum())
    gaps = rng.exponential(1.0, n) * np.where(rng.random(n) < 0.03, 200.0, 1.0)
    cs = np.cumsum(gaps)
    first = np.cumsum(counts) - counts
    within = cs - np.repeat(cs[first] - gaps[first], counts)
    total = np.repeat(within[first + counts - 1], counts)
    return (np.repeat(start, counts) + np.repeat(span, counts) * within / total).astype(np.int64)


def _ratings(rng: np.random.Generator, spec: Spec, truth: _Truth, u: np.ndarray, i: np.ndarray):
    """(rounded ratings, noiseless full prediction, bias-only prediction) for pairs (u, i)."""
    bias = spec.global_mean + truth.bu[u] + truth.bi[i]
    full = bias + np.einsum("ij,ij->i", truth.P[u], truth.Q[i])
    raw = full + rng.normal(0.0, spec.noise, len(u)) if spec.noise > 0 else full
    lo, hi = spec.rating_scale
    step = np.where(truth.half_stars[u], spec.rating_step, max(spec.rating_step, 1.0))
    rounded = np.clip(np.round(raw / step) * step, np.where(step >= 1.0, max(lo, 1.0), lo), hi)
    return rounded, full, bias


def _check_target(name: str, data_dir: Any, force: bool) -> Path:
    from recsys_cli.data.registry import RELEASES

    if not _NAME_RE.match(name or ""):
        raise UsageError(f"bad dataset name {name!r}: use letters, digits, '.', '_' or '-'")
    if name.lower() in RELEASES:
        raise UsageError(f"{name!r} is a GroupLens release; give synthetic data another name (e.g. synth-{name})")
    target = settings.raw_dir(name, data_dir)
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; pass --force to replace it")
    return target


def generate(name: str, *, preset: str | None = None, n_ratings: int | None = None, n_users: int | None = None,
             n_items: int | None = None, factors: int = 8, noise: float = 0.5, seed: int = 42,
             min_per_user: int | None = None, data_dir: Any = None, force: bool = False,
             save_truth: bool = False, progress: Any = None) -> dict[str, Any]:
    """Write synthetic MovieLens-layout CSVs into data/raw/NAME atomically; returns generate.json's content."""
    if preset is None and n_ratings is None and n_users is None and n_items is None:
        preset = "ml-100k"
    spec = make_spec(preset=preset, n_ratings=n_ratings, n_users=n_users, n_items=n_items, factors=factors,
                     noise=noise, seed=seed, min_per_user=min_per_user)
    target = _check_target(name, data_dir, force)
    from recsys_cli.runtime import check_memory

    # ids, ratings and timestamps per rating, with the sampling's working copies; factors per user and item
    check_memory(64 * spec.n_ratings + 16 * spec.factors * (spec.n_users + spec.n_items),
                 f"generating {spec.n_ratings:,} ratings")
    from recsys_cli.swap import check_writable, recover, replace_dir, scratch_dir

    check_writable(target.parent, "data folder")
    recover(target.parent, name)
    scratch = scratch_dir(target.parent, name)
    try:
        record = _write_all(scratch, name, preset, spec, save_truth, progress)
        replace_dir(scratch, target)  # recoverable at every step: see recsys_cli/swap.py
        return record
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_all(folder: Path, name: str, preset: str | None, spec: Spec, save_truth: bool,
               progress: Any) -> dict[str, Any]:
    import polars as pl

    plant_seq, chunk_seq = np.random.SeedSequence(spec.seed).spawn(2)
    rng = np.random.Generator(np.random.PCG64(plant_seq))
    truth = _Truth(rng, spec)
    counts = user_counts(rng, spec)
    cum = np.cumsum(counts)
    n_chunks = max(1, math.ceil(spec.n_ratings / CHUNK_RATINGS))
    bounds = np.r_[0, np.searchsorted(cum, np.arange(1, n_chunks) * CHUNK_RATINGS, side="right"), spec.n_users]
    bounds = np.unique(bounds)
    rngs = [np.random.Generator(np.random.PCG64(s)) for s in chunk_seq.spawn(len(bounds) - 1)]
    ni = spec.n_items
    hist, item_n = np.zeros(11, dtype=np.int64), np.zeros(ni, dtype=np.int64)
    first_ts = np.full(ni, np.iinfo(np.int64).max)
    sums = np.zeros(4)  # sum r, sum r^2, SSE vs noiseless truth, SSE vs biases only
    sha = hashlib.sha256()
    if progress is not None:
        progress.start(spec.n_ratings, f"generating {name}")
    with open(folder / "ratings.csv", "wb") as fh:
        for c, crng in enumerate(rngs):
            users = np.arange(bounds[c], bounds[c + 1])
            rows, items = sample_items(crng, truth, users, counts[users])
            u = users[rows]
            ts = _timestamps(crng, truth, users, counts[users])
            r, full, bias = _ratings(crng, spec, truth, u, items)
            lo, hi = spec.rating_scale
            sums += [r.sum(), (r * r).sum(), ((r - np.clip(full, lo, hi)) ** 2).sum(), ((r - bias) ** 2).sum()]
            hist += np.bincount(np.rint(r * 2).astype(np.int64), minlength=11)[:11]
            item_n += np.bincount(items, minlength=ni)
            np.minimum.at(first_ts, items, ts)
            order = np.argsort(rows.astype(np.int64) * ni + items)
            frame = pl.DataFrame({"userId": (u[order] + 1).astype(np.int32), "movieId": (items[order] + 1).astype(np.int32),
                                  "rating": r[order], "timestamp": ts[order]})
            buf = io.BytesIO()
            frame.write_csv(buf, include_header=c == 0)
            sha.update(buf.getbuffer())
            fh.write(buf.getbuffer())
            if progress is not None:
                progress.advance(len(r))
    _write_movies(folder, truth, first_ts, rng, spec)
    if save_truth:
        np.savez(folder / "truth.npz", user_factors=truth.P.astype(np.float32), item_factors=truth.Q.astype(np.float32),
                 user_bias=truth.bu.astype(np.float32), item_bias=truth.bi.astype(np.float32),
                 global_mean=np.float32(spec.global_mean), genre_directions=truth.dirs.astype(np.float32),
                 item_popularity=truth.pop.astype(np.float32), user_ids=np.arange(1, spec.n_users + 1),
                 item_ids=np.arange(1, ni + 1))
    record = _record(name, preset, spec, counts, item_n, hist, sums, truth, sha.hexdigest(), save_truth)
    (folder / "generate.json").write_text(json.dumps(record, indent=2) + "\n")
    if progress is not None:
        progress.log(f"wrote {spec.n_ratings:,} ratings from {spec.n_users:,} users on {ni:,} items")
    return record


def _write_movies(folder: Path, truth: _Truth, first_ts: np.ndarray, rng: np.random.Generator, spec: Spec) -> None:
    import polars as pl

    t0_year = int(spec.start[:4])
    rated = first_ts < np.iinfo(np.int64).max
    first_year = np.where(rated, first_ts, 0).astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    unrated_year = rng.integers(t0_year - 30, int(spec.end[:4]) + 1, len(first_ts))
    year = np.maximum(np.where(rated, first_year - truth.item_age, unrated_year), 1902)
    names = np.asarray(GENRES)
    genres = ["|".join(names[row]) for row in truth.genres]
    ids = np.arange(1, len(first_ts) + 1)
    titles = [f"Synthetic Movie {i} ({y})" for i, y in zip(ids.tolist(), year.tolist(), strict=True)]
    pl.DataFrame({"movieId": ids.astype(np.int32), "title": titles, "genres": genres}).write_csv(folder / "movies.csv")


def _record(name: str, preset: str | None, spec: Spec, counts: np.ndarray, item_n: np.ndarray, hist: np.ndarray,
            sums: np.ndarray, truth: _Truth, sha: str, save_truth: bool) -> dict[str, Any]:
    from recsys_cli import __version__

    n = spec.n_ratings
    mean = sums[0] / n
    sst = sums[1] - n * mean * mean
    top = np.sort(item_n)[::-1][: max(1, len(item_n) // 10)].sum() / n
    return {
        "generator": "recsys synthetic", "format_version": 1, "recsys_version": __version__,
        "name": name, "layout": "csv", "preset": preset, "params": {**asdict(spec), "rating_scale": list(spec.rating_scale)},
        "model": {"zipf_exponent": ZIPF_EXPONENT, "zipf_offset": ZIPF_OFFSET, "activity_tail": ACTIVITY_TAIL,
                  "popularity_share": POPULARITY_SHARE, "taste_strength": TASTE_STRENGTH},
        "files": {"ratings.csv": {"sha256": sha}, "movies.csv": {}, **({"truth.npz": {}} if save_truth else {})},
        "truth": {
            "n_ratings": n, "n_users": spec.n_users, "n_items": spec.n_items,
            "n_rated_items": int(np.count_nonzero(item_n)),
            "rating_mean": round(float(mean), 4), "rating_std": round(float(math.sqrt(max(sst, 0) / n)), 4),
            "oracle_rmse": round(float(math.sqrt(sums[2] / n)), 4),
            "oracle_r2": round(float(1 - sums[2] / sst), 4) if sst > 0 else None,
            "bias_only_r2": round(float(1 - sums[3] / sst), 4) if sst > 0 else None,
            "top10pct_item_share": round(float(top), 4),
            "ratings_per_user": {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())},
            "ratings_per_item_max": int(item_n.max()),
            "rating_histogram": {f"{k / 2:.1f}": int(v) for k, v in enumerate(hist) if v},
            "genres": {g: int(c) for g, c in zip(GENRES, truth.genres.sum(axis=0), strict=True)},
        },
    }
