"""Search spaces for `recsys tune`, parsed by hand (CLI text is never evaluated).

Grid: `key=v1,v2,...` (raw strings; the model config coerces types); a value holding commas is
double-quoted, e.g. `models="ials,ease","ials,ease,rp3beta"` for rank-blend. Sampled searches:
`key=loguniform(a,b)`, `uniform(a,b)`, `int(a,b)` (uniform integer, both ends included),
`intlog(a,b)` (log-uniform integer) or `choice(a,b,...)`; each maps onto one Optuna
`suggest_*` call, so whichever Optuna sampler runs the search (TPE, random, CMA-ES) draws it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from recsys_cli.errors import UsageError

DISTRIBUTIONS = ("loguniform", "uniform", "int", "intlog", "choice")
_DIST_RE = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$")
_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Distribution:
    """One random-search dimension: kind in DISTRIBUTIONS with its parsed arguments."""

    kind: str
    args: tuple

    def suggest(self, trial, key: str) -> Any:
        """Ask an Optuna trial for this dimension (floats rounded to 6 significant digits so configs stay readable)."""
        if self.kind == "choice":
            return trial.suggest_categorical(key, list(self.args))
        lo, hi = self.args
        if self.kind in ("uniform", "loguniform"):
            return _round6(trial.suggest_float(key, lo, hi, log=self.kind == "loguniform"))
        return int(trial.suggest_int(key, lo, hi, log=self.kind == "intlog"))

    def bounds(self) -> tuple:
        """Values a config must accept: the choices, or both ends of the range."""
        return self.args

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


def split_values(text: str, where: str) -> list[str]:
    """`a, b, "c,d"` -> ['a', 'b', 'c,d']: commas separate values except inside double quotes."""
    import csv

    if text.count('"') % 2:
        raise UsageError(f"{where}: unbalanced double quote")
    try:
        rows = list(csv.reader([text], skipinitialspace=True, strict=True))
    except csv.Error as exc:
        raise UsageError(f"{where}: {exc}") from None
    return [v.strip() for v in rows[0]] if rows else [""]


def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """`--grid key=v1,v2,...` (repeatable) -> {key: [raw values]}; the model config coerces types."""
    grid: dict[str, list[str]] = {}
    for item in items or []:
        key, text = _split_key(item, "--grid")
        values = split_values(text, f"--grid {item!r}")
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
    args = split_values(inner, where) if inner.strip() else []
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


# ----------------------------------------------------------------------------- a whole search
SAMPLERS = ("tpe", "random", "grid", "cmaes")


@dataclass(frozen=True)
class SearchPlan:
    """What to search: `grid` (every combination, sampler grid) or `space` drawn `n_trials` times by `sampler`."""

    sampler: str
    n_trials: int
    grid: dict[str, list[str]]
    space: dict[str, Distribution]
    fixed: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the search (a resumed study must match it, trial count aside)."""
        return {"sampler": self.sampler, "grid": self.grid, "space": {k: str(d) for k, d in self.space.items()},
                "fixed": {k: str(v) for k, v in self.fixed.items()}}

    def suggest(self, trial) -> dict[str, Any]:
        """The raw params of one Optuna trial: the fixed ones, then the tuned ones in the order given."""
        raw = dict(self.fixed)
        for key, values in self.grid.items():
            raw[key] = trial.suggest_categorical(key, values)
        for key, dist in self.space.items():
            raw[key] = dist.suggest(trial, key)
        return raw


def check_sampler_installed(sampler: str) -> None:
    if sampler == "cmaes":
        import importlib.util

        if importlib.util.find_spec("cmaes") is None:
            raise UsageError("--sampler cmaes needs the cmaes package: pip install 'recsys-cli[cmaes]'")


def plan_search(model: str, *, grid: dict[str, list[str]] | None = None, space: dict[str, Distribution] | None = None,
                n_trials: int = 0, sampler: str | None = None, fixed: dict[str, Any] | None = None) -> SearchPlan:
    """Validate a search against the model's config up front (keys, every grid value, both ends of every range)."""
    from recsys_cli.errors import ConfigError
    from recsys_cli.models.registry import create_model, get_model_class

    grid, space, fixed = grid or {}, space or {}, fixed or {}
    if sampler is not None and sampler not in SAMPLERS:
        raise UsageError(f"unknown --sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if grid and (space or n_trials):
        raise UsageError("give either --grid (every combination) or --trials N with --space (a sampled search), not both")
    if n_trials and not space:
        raise UsageError("--trials N (or --random N) needs at least one --space key=distribution(...)")
    if space and not n_trials:
        raise UsageError("--space needs --trials N (or --random N): the number of trials to draw")
    if not grid and not space:
        raise UsageError("nothing to tune: give --grid key=v1,v2 or --trials N --space key=dist(a,b)")
    if n_trials < 0:
        raise UsageError(f"--trials must be at least 1, got {n_trials}")
    if grid and sampler not in (None, "grid"):
        raise UsageError(f"--grid runs every combination (sampler grid); --sampler {sampler} draws from --space")
    if space and sampler == "grid":
        raise UsageError("--sampler grid runs the combinations of --grid key=v1,v2; --space needs tpe, random or cmaes")
    sampler = "grid" if grid else (sampler or "tpe")
    check_sampler_installed(sampler)
    fields = get_model_class(model).Config.field_names()
    for option, keys in (("--grid", grid), ("--space", space), ("--param", fixed)):
        for key in keys:
            if key.replace("-", "_") not in fields:
                raise ConfigError(f"{model}: {option} {key}: unknown parameter; valid parameters: {', '.join(fields)}")
    both = sorted(set(fixed) & (set(grid) | set(space)))
    if both:
        raise UsageError(f"{', '.join(both)} is both fixed with --param and tuned; drop one")
    create_model(model, fixed)  # ConfigError on a bad fixed value
    for combo in grid_trials(grid):  # ConfigError on a value (or combination) the config refuses
        create_model(model, {**fixed, **combo})
    for key, dist in space.items():
        for value in dist.bounds():
            create_model(model, {**fixed, key: value})
    n = len(grid_trials(grid)) if grid else n_trials
    return SearchPlan(sampler=sampler, n_trials=n, grid=grid, space=space, fixed=fixed)
