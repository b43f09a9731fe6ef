"""Strict hyperparameter configs: frozen dataclasses with a `from_dict` that rejects typos.

A model's config class lists every hyperparameter with its type, default and (where
relevant) allowed choices. Values may arrive as strings from the CLI (`--param k=40`) or
from TOML; they are coerced to the declared type, and an unknown key or a bad value is a
ConfigError that names the valid options.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, ClassVar

from recsys_cli.errors import ConfigError


def choice(default: Any, *choices: Any, doc: str = "") -> Any:
    """A dataclass field restricted to `choices`."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices), "doc": doc})


def param(default: Any, doc: str = "", *, low: float | None = None, high: float | None = None) -> Any:
    """A documented dataclass field with an optional numeric range."""
    return dataclasses.field(default=default, metadata={"doc": doc, "low": low, "high": high})


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0])
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).strip())
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            return str(value)
    except (TypeError, ValueError):
        tname = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"parameter {name}: {value!r} is not a valid {tname}") from None
    return value


INT_LIMIT = 2**31 - 1  # counts and sizes index int32 arrays; nothing sensible is larger


def _check_number(name: str, value: Any) -> None:
    """Every numeric hyperparameter is finite, and every integer one fits the int32 the kernels use."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"parameter {name}: {value!r} is not a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT <= value <= INT_LIMIT:
        raise ConfigError(f"parameter {name}: {value} is out of range (at most {INT_LIMIT:,} in size)")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of every model's config. Subclasses are frozen dataclasses."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None, preset: str | None = None) -> ModelConfig:
        values = dict(values or {})
        merged: dict[str, Any] = {}
        if preset:
            if preset not in cls.PRESETS:
                valid = ", ".join(sorted(cls.PRESETS)) or "none"
                raise ConfigError(f"unknown preset {preset!r}; valid presets: {valid}")
            merged.update(cls.PRESETS[preset])
        merged.update(values)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in merged.items():
            key_norm = key.replace("-", "_")
            if key_norm not in fields:
                close = difflib.get_close_matches(key_norm, list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"unknown parameter {key!r}{hint}; valid parameters: {', '.join(fields)}"
                )
            f = fields[key_norm]
            coerced = _coerce(key_norm, value, hints[key_norm])
            choices = f.metadata.get("choices")
            if choices and coerced not in choices:
                raise ConfigError(
                    f"parameter {key_norm}: {coerced!r} is not one of {', '.join(map(str, choices))}"
                )
            _check_number(key_norm, coerced)
            low, high = f.metadata.get("low"), f.metadata.get("high")
            if low is not None and coerced is not None and coerced < low:
                raise ConfigError(f"parameter {key_norm}: {coerced!r} is below the minimum {low}")
            if high is not None and coerced is not None and coerced > high:
                raise ConfigError(f"parameter {key_norm}: {coerced!r} is above the maximum {high}")
            kwargs[key_norm] = coerced
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ModelConfig:
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One row per parameter: name, type, default, choices, low, high, doc (what `recsys models` prints)."""
        hints = typing.get_type_hints(cls)
        return [
            {
                "name": f.name,
                "type": _type_name(hints[f.name]),
                "default": f.default,
                "choices": list(f.metadata.get("choices", ())) or None,
                "low": f.metadata.get("low"),
                "high": f.metadata.get("high"),
                "doc": f.metadata.get("doc", ""),
            }
            for f in dataclasses.fields(cls)
        ]


def _type_name(typ: Any) -> str:
    """'int', 'float', 'str', 'bool', or 'float or none' for Optional[float]."""
    args = typing.get_args(typ)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + " or none"
    return getattr(typ, "__name__", str(typ))
