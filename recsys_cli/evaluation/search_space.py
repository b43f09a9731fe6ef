"""Search spaces for `recsys tune`, parsed by hand (CLI text is never evaluated).

Grid: `key=v1,v2,...` (raw strings; the model config coerces types). Random search:
`key=loguniform(a,b)`, `uniform(a,b)`, `int(a,b)` (uniform integer, both ends included),
`intlog(a,b)` (log-uniform integer) or `choice(a,b,...)`, drawn with Generator(PCG64(seed)).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_cli.errors import UsageError

DISTRIBUTIONS = ("loguniform", "uniform", "int", "intlog", "choice")
_DIST_RE = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$")
_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Distribution:
    """One random-search dimension: kind in DISTRIBUTIONS with its parsed arguments."""

    kind: str
    args: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value (floats rounded to 6 significant digits so configs stay readable)."""
        if self.kind == "choice":
            return self.args[int(rng.integers(len(self.args)))]
        lo, hi = self.args
        if self.kind == "uniform":
            return _round6(rng.uniform(lo, hi))
        if self.kind == "loguniform":
            return _round6(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.kind == "int":
            return int(rng.integers(lo, hi + 1))
        # intlog: log-uniform over the integers lo..hi (each integer owns [v, v+1) in log space)
        return int(min(hi, math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))))

    def __str__(self) -> str:
        return f"{self.kind}({','.join(map(str, self.args))})"


def _round6(x: float) -> float:
    return float(f"{x:.6g}")


def _split_key(item: str, option: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key or not value.strip():
        raise UsageError(f"{option} expects key=value, got {item!r}")
    return key, value.strip()


def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """`--grid key=v1,v2,...` (repeatable) -> {key: [raw values]}; the model config coerces types."""
    grid: dict[str, list[str]] = {}
    for item in items or []:
        key, text = _split_key(item, "--grid")
        values = [v.strip() for v in text.split(",")]
        if any(not v for v in values):
            raise UsageError(f"--grid {item!r}: empty value in the list")
        if key in grid:
            raise UsageError(f"--grid {key} given twice; list every value once: {key}=v1,v2,...")
        grid[key] = list(dict.fromkeys(values))
    return grid


def _number(text: str, what: str) -> float:
    if not _NUM_RE.match(text):
        raise UsageError(f"{what}: {text!r} is not a number")
    return float(text)


def parse_distribution(text: str, key: str = "value") -> Distribution:
    """Parse `loguniform(a,b)`, `uniform(a,b)`, `int(a,b)`, `intlog(a,b)` or `choice(a,b,...)`."""
    m = _DIST_RE.match(text)
    where = f"--space {key}={text}"
    if not m or m.group(1) not in DISTRIBUTIONS:
        raise UsageError(f"{where}: expected one of {', '.join(d + '(...)' for d in DISTRIBUTIONS)}")
    kind, inner = m.group(1), m.group(2)
    args = [a.strip() for a in inner.split(",")] if inner.strip() else []
    if any(not a for a in args):
        raise UsageError(f"{where}: empty argument")
    if kind == "choice":
        if not args:
            raise UsageError(f"{where}: choice needs at least one value")
        return Distribution(kind, tuple(dict.fromkeys(args)))
    if len(args) != 2:
        raise UsageError(f"{where}: {kind} takes exactly two bounds, got {len(args)}")
    lo, hi = (_number(a, where) for a in args)
    if kind in ("int", "intlog"):
        if not (lo.is_integer() and hi.is_integer()):
            raise UsageError(f"{where}: {kind} bounds must be integers")
        lo, hi = int(lo), int(hi)
        if lo > hi:
            raise UsageError(f"{where}: lower bound {lo} is above the upper bound {hi}")
        if kind == "intlog" and lo < 1:
            raise UsageError(f"{where}: intlog bounds must be >= 1")
        return Distribution(kind, (lo, hi))
    if not lo < hi:
        raise UsageError(f"{where}: lower bound must be below the upper bound")
    if kind == "loguniform" and lo <= 0:
        raise UsageError(f"{where}: loguniform bounds must be > 0")
    return Distribution(kind, (lo, hi))


def parse_space(items: list[str] | None) -> dict[str, Distribution]:
    """`--space key=dist(...)` (repeatable) -> {key: Distribution}."""
    space: dict[str, Distribution] = {}
    for item in items or []:
        key, text = _split_key(item, "--space")
        if key in space:
            raise UsageError(f"--space {key} given twice")
        space[key] = parse_distribution(text, key)
    return space


def grid_trials(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid, first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def random_trials(space: dict[str, Distribution], n: int, seed: int) -> list[dict[str, Any]]:
    """n draws from the space with Generator(PCG64(seed)); same seed, same trials."""
    if n < 1:
        raise UsageError(f"--random needs at least one trial, got {n}")
    rng = np.random.Generator(np.random.PCG64(seed))
    return [{k: d.sample(rng) for k, d in space.items()} for _ in range(n)]
