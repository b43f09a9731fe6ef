"""Model names (as the CLI spells them) -> classes, imported lazily so listing is cheap."""

from __future__ import annotations

import importlib
from typing import Any

from recsys_cli.errors import ConfigError, UsageError

# name -> "module:Class"; modules import numba only when a model is used.
MODELS: dict[str, str] = {
    "bias": "recsys_cli.models.baseline:BiasModel",
    "popularity": "recsys_cli.models.baseline:PopularityModel",
    "user-knn": "recsys_cli.models.knn:UserKNN",
    "item-knn": "recsys_cli.models.knn:ItemKNN",
    "svd": "recsys_cli.models.mf:SVD",
    "svdpp": "recsys_cli.models.mf:SVDpp",
    "content": "recsys_cli.models.content:ContentModel",
    "als": "recsys_cli.models.als:ALS",
    "ials": "recsys_cli.models.als:IALS",
    "hybrid-als": "recsys_cli.models.hybrid:HybridALS",
    "bpr": "recsys_cli.models.bpr:BPR",
    "blend": "recsys_cli.models.blend:BlendModel",
    "fm": "recsys_cli.models.fm:FM",
    "bpmf": "recsys_cli.models.fm:BPMF",
    "ease": "recsys_cli.models.ease:EASE",
    "rank-blend": "recsys_cli.models.rank_blend:RankBlend",
    "rp3beta": "recsys_cli.models.graph:RP3beta",
}

SURPRISE_PREFIX = "surprise:"


def model_names() -> list[str]:
    return list(MODELS)


def get_model_class(name: str):
    """The class for a model name; UsageError listing valid names for an unknown one."""
    if not isinstance(name, str):
        raise UsageError(f"a model is named by a string such as 'svd' or 'ials', got {name!r}")
    if name.startswith(SURPRISE_PREFIX):
        module = importlib.import_module("recsys_cli.models.surprise_adapter")
        return module.adapter_class(name[len(SURPRISE_PREFIX) :])
    target = MODELS.get(name)
    if target is None:
        import difflib

        close = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"unknown model {name!r}{hint}; valid models: {', '.join(MODELS)}, {SURPRISE_PREFIX}<Algorithm>"
        )
    module_name, _, cls_name = target.partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def describe_models(name: str | None = None) -> list[dict[str, Any]]:
    """One row per (model, hyperparameter): every registered model and a `surprise:<Algorithm>` row, or one model.

    Row keys: model, parameter, type, default, choices, low, high (the allowed values or range;
    None where free), presets ({preset: value} for the presets that set it) and doc (one line).
    A model without hyperparameters gets one row whose parameter is None.
    """
    if name is None:
        from recsys_cli.models.surprise_adapter import ALGORITHMS

        rows = [row for n in MODELS for row in describe_models(n)]
        rows.append({"model": f"{SURPRISE_PREFIX}<Algorithm>", "parameter": None, "type": None, "default": None,
                     "choices": list(ALGORITHMS), "low": None, "high": None, "presets": {},
                     "doc": f"a scikit-surprise algorithm; `recsys models {SURPRISE_PREFIX}SVD` lists its parameters"})
        return rows
    config = get_model_class(name).Config
    rows = [
        {"model": name, "parameter": p["name"], "type": p["type"], "default": p["default"], "choices": p["choices"],
         "low": p["low"], "high": p["high"],
         "presets": {k: v[p["name"]] for k, v in config.PRESETS.items() if p["name"] in v}, "doc": p["doc"]}
        for p in config.describe()
    ]
    if not rows:
        rows.append({"model": name, "parameter": None, "type": None, "default": None, "choices": None, "low": None,
                     "high": None, "presets": {}, "doc": "no hyperparameters"})
    return rows


def create_model(name: str, params: dict[str, Any] | None = None, preset: str | None = None):
    """Instantiate a model from its name, raw (string) params and an optional preset."""
    cls = get_model_class(name)
    try:
        config = cls.Config.from_dict(params or {}, preset=preset)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    model = cls(config)
    check = getattr(model, "check_config", None)
    if check is not None:  # a blend checks its members' names and params now, not after "training ..."
        check()
    return model


def load_params_file(path) -> dict[str, Any]:
    """Read hyperparameters from a TOML file (top-level keys, or a [params] table)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from recsys_cli.errors import DataError

    try:
        with open(path, "rb") as fh:
            raw = fh.read(1 << 20)
    except FileNotFoundError:
        raise DataError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"config file {path} is a directory") from None
    except OSError as exc:
        raise DataError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None
    params = data.get("params", data)
    beside = sorted(k for k in data if k != "params") if "params" in data else []
    if beside:  # they used to be dropped without a word
        raise UsageError(f"{path}: {', '.join(beside)} beside the [params] table; put every hyperparameter in "
                         "[params], or all of them at the top level")
    if not isinstance(params, dict):
        raise UsageError(f"{path}: [params] must be a table of key = value")
    return dict(params)
