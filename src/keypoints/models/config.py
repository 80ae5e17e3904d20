"""Declared model configs: one dataclass per model, merged once, unknown options raise."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, closest

__all__ = ["config_class", "check_range", "check_int", "check_unit", "check_max_keypoints"]


def check_range(name: str, value, ok: bool, allowed: str) -> None:
    """Raise ConfigError ``name=value is out of range; allowed: ...`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {allowed}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value, low: int, high: int) -> None:
    """An integer in [low, high]."""
    ok = _is_int(value) and low <= value <= high
    check_range(name, value, ok, f"an integer in [{low}, {high}]")


def check_unit(name: str, value) -> None:
    """A number in [0, 1]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    check_range(name, value, ok, "[0, 1]")


def check_max_keypoints(value, allow_all: bool = True) -> None:
    """-1 (all) or a positive count."""
    ok = _is_int(value) and (value >= 1 or (allow_all and value == -1))
    check_range("max_keypoints", value, ok, "-1 (all) or >= 1" if allow_all else ">= 1")


def config_class(cls):
    """Make ``cls`` a keyword-only config dataclass with checked option names.

    Its constructor rejects unknown names with the closest valid one, and it gets ``to_dict``,
    ``from_dict``, ``replace`` and ``to_json_string``.

    ``cls`` may define ``validate(self)`` (called after every construction) and ``aliases`` (a dict
    of alternative option names, e.g. ``threshold`` -> ``keypoint_threshold``).
    """
    cls = dataclasses.dataclass(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    aliases: dict[str, str] = dict(getattr(cls, "aliases", {}))
    dataclass_init = cls.__init__

    def canonical(kwargs: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in kwargs.items():
            name = aliases.get(key, key)
            if name not in names:
                valid = sorted(set(names) | set(aliases))
                raise ConfigError(
                    f"unknown option '{key}' for {cls.__name__}{closest(key, valid)}; "
                    f"valid options: {', '.join(valid)}"
                )
            out[name] = value
        return out

    def __init__(self, **kwargs):
        dataclass_init(self, **canonical(kwargs))
        if hasattr(self, "validate"):
            self.validate()

    def to_dict(self) -> dict[str, Any]:
        return {
            name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in names
        }

    @classmethod
    def from_dict(cls_, data: Mapping[str, Any], **overrides):
        """Build from a saved dict plus keyword overrides.

        Transformers' metadata keys and unknown keys of ``data`` are ignored; the overrides must be
        valid option names.
        """
        model_type = data.get("model_type")
        expected = getattr(cls_, "model_type", None)
        if model_type is not None and expected is not None and model_type != expected:
            raise ConfigError(
                f"the checkpoint's config is for model_type '{model_type}', not '{expected}'"
            )
        known = {k: v for k, v in data.items() if k in names}
        return cls_(**{**known, **canonical(overrides)})

    def replace(self, **overrides):
        """A copy with some options changed (validated; aliases accepted)."""
        return type(self)(**{**self.to_dict(), **canonical(overrides)})

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    cls.__init__ = __init__
    cls.to_dict = to_dict
    cls.from_dict = from_dict
    cls.replace = replace
    cls.to_json_string = to_json_string
    cls.option_names = tuple(names)
    return cls
