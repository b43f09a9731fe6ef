"""Which data a benchmark runs on: real MovieLens where present, MovieLens-shaped synthetic otherwise.

Scales: `ml-100k` (alias `100k`), `1m`, `10m`, `25m`, `32m` (also spelled `ml-1m` ...) name a
GroupLens release; any other number of ratings (`500000`, `500k`, `2m`) is synthetic.

- A release that is preprocessed in the data dir is used as it is; one that is only
  downloaded is preprocessed first. ml-100k is downloaded from RECSYS_MIRROR when that is set.
- Otherwise `recsys generate` data with the release's shape (or N ratings) is made in
  DATA/bench/ as `synth-<scale>-seed<seed>` and reused by later runs with the same scale and seed.

Splits are computed in memory from the loaded ratings, seeded, so they never depend on what
splits happen to be stored: rating models use a random 80/20 holdout of ratings, ranking
models a per-user 80/20 split (every user keeps training ratings and is tested).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys_cli import settings
from recsys_cli.errors import UsageError

RELEASE_SCALES = {"100k": "ml-100k", "1m": "ml-1m", "10m": "ml-10m", "25m": "ml-25m", "32m": "ml-32m"}
MIRROR_RELEASES = ("ml-100k",)  # small enough to fetch as part of a benchmark
MIN_SYNTHETIC = 1000
TEST_FRACTION = 0.2
SPLITS = {
    "random": f"random {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} holdout of ratings",
    "user": f"per-user {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split (each user keeps training ratings)",
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([km]?)$")


@dataclass(frozen=True)
class Scale:
    """A parsed --scale: a release to use or imitate, or a number of synthetic ratings."""

    label: str
    release: str | None = None
    n_ratings: int | None = None


def parse_scale(text: str) -> Scale:
    """Parse --scale; UsageError naming the valid forms for anything else."""
    key = (text or "").strip().lower()
    short = key[3:] if key.startswith("ml-") else key
    if short in RELEASE_SCALES:
        release = RELEASE_SCALES[short]
        return Scale(label=release, release=release)
    match = _SIZE.match(key.replace("_", "").replace(",", ""))
    if match:
        n = int(round(float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2)]))
        if n < MIN_SYNTHETIC:
            raise UsageError(f"--scale {text}: need at least {MIN_SYNTHETIC} ratings")
        return Scale(label=str(n), n_ratings=n)
    valid = ", ".join(["ml-100k", *[k for k in RELEASE_SCALES if k != "100k"]])
    raise UsageError(f"unknown scale {text!r}; use one of {valid}, or a number of ratings such as 500000 or 500k")


def synthetic_sizes(n_ratings: int) -> dict[str, int]:
    """Users and items for N synthetic ratings, near MovieLens proportions (~120 ratings a user)."""
    n_users = max(10, n_ratings // 120)
    n_items = max(20, int(6 * n_ratings**0.5), -(-n_ratings // n_users) * 2)
    return {"n_ratings": n_ratings, "n_users": n_users, "n_items": n_items}


def generate_kwargs(scale: Scale) -> dict[str, Any]:
    """Arguments of `synthetic.generate` that reproduce this scale's shape."""
    if scale.release is not None:
        return {"preset": scale.release}
    return synthetic_sizes(int(scale.n_ratings))


@dataclass
class BenchData:
    """The processed dataset a benchmark reads, and where it came from."""

    scale: Scale
    source: str  # "movielens" | "synthetic"
    name: str
    data_dir: Path
    raw_path: Path | None
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "ratings": self.meta.get("n_ratings"),
            "users": self.meta.get("n_users"),
            "items": self.meta.get("n_items"),
            "path": str(settings.processed_dir(self.name, self.data_dir)),
            "splits": dict(SPLITS),
        }


def _processed(name: str, root: Path) -> bool:
    return (settings.processed_dir(name, root) / "dataset.json").is_file()


def _raw(name: str, root: Path) -> Path | None:
    path = settings.raw_dir(name, root)
    return path if path.is_dir() else None


def prepare(scale: Scale, *, data_dir=None, seed: int = settings.DEFAULT_SEED, progress=None) -> BenchData:
    """Find, fetch, preprocess or generate the benchmark's dataset; see the module docstring."""
    from recsys_cli.data.preprocess import preprocess, read_meta
    from recsys_cli.progress import NullProgress

    progress = progress or NullProgress()
    root = settings.data_dir(data_dir)
    if scale.release is not None:
        release = scale.release
        if not _processed(release, root) and _raw(release, root) is None and release in MIRROR_RELEASES:
            mirror = settings.mirror()
            if mirror:
                from recsys_cli.data.download import download

                progress.log(f"benchmark: downloading {release} from {mirror}")
                download(release, data_dir=root, mirror=mirror, progress=progress)
        if not _processed(release, root) and _raw(release, root) is not None:
            progress.log(f"benchmark: preprocessing {release}")
            preprocess(release, data_dir=root)
        if _processed(release, root):
            return BenchData(scale, "movielens", release, root, _raw(release, root), read_meta(release, root))
        progress.log(f"benchmark: {release} is not in {root}; using synthetic data shaped like it")
    bench_root = root / "bench"
    name = f"synth-{scale.label}-seed{seed}"
    if not _processed(name, bench_root):
        if _raw(name, bench_root) is None or not (settings.raw_dir(name, bench_root) / "generate.json").is_file():
            from recsys_cli.data.synthetic import generate

            progress.log(f"benchmark: generating {name} in {bench_root}")
            generate(name, **generate_kwargs(scale), seed=seed, data_dir=bench_root, force=True)
        progress.log(f"benchmark: preprocessing {name}")
        preprocess(name, data_dir=bench_root)
    return BenchData(scale, "synthetic", name, bench_root, _raw(name, bench_root), read_meta(name, bench_root))


@dataclass
class Splits:
    """Train/test parts of one dataset for both protocols, over the dataset's vocabularies."""

    train: dict[str, Any]
    test: dict[str, Any]
    fingerprint: str
    titles: dict[int, str]


def load_splits(name: str, data_dir, seed: int) -> Splits:
    """Load the processed ratings and split them both ways (see the module docstring)."""
    from recsys_cli.data.dataset import load_dataset
    from recsys_cli.data.splits import TEST, TRAIN, random_holdout, user_fraction

    ds = load_dataset(name, data_dir)
    full = ds.interactions()
    parts = {
        "random": random_holdout(len(full), test=TEST_FRACTION, seed=seed),
        "user": user_fraction(full.users, test=TEST_FRACTION, seed=seed),
    }
    train = {k: full.subset(p == TRAIN, split=k) for k, p in parts.items()}
    test = {k: full.subset(p == TEST, split=k) for k, p in parts.items()}
    return Splits(train, test, ds.fingerprint, ds.titles())


def tiny(data, n: int = 2000):
    """The first n ratings of an Interactions (same vocabularies): warm-up / compile input."""
    return data.subset(np.arange(min(n, len(data))))
