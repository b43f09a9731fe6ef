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
}

SURPRISE_PREFIX = "surprise:"


def model_names() -> list[str]:
    return list(MODELS)


def get_model_class(name: str):
    """The class for a model name; UsageError listing valid names for an unknown one."""
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


def create_model(name: str, params: dict[str, Any] | None = None, preset: str | None = None):
    """Instantiate a model from its name, raw (string) params and an optional preset."""
    cls = get_model_class(name)
    try:
        config = cls.Config.from_dict(params or {}, preset=preset)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return cls(config)


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
    if not isinstance(params, dict):
        raise UsageError(f"{path}: [params] must be a table of key = value")
    return dict(params)
