"""Declared model configs: one dataclass per model, merged once, unknown options raise."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # Python 3.10: only type checkers read it

    def dataclass_transform(**kwargs):
        """No-op stand-in for :func:`typing.dataclass_transform` (Python 3.11+)."""
        return lambda decorated: decorated


import numpy as np

from ..errors import ConfigError, closest

__all__ = [
    "Config",
    "config_class",
    "check_range",
    "check_int",
    "check_unit",
    "check_max_keypoints",
]


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


C = TypeVar("C", bound="Config")


class Config:
    """Base of the declared configs: checked option names, aliases, dict round trips.

    Subclasses are decorated with :func:`config_class`, declare their options as annotated
    fields with defaults, and may define ``validate(self)`` (called after every construction),
    ``aliases`` (alternative option names, e.g. ``threshold`` -> ``keypoint_threshold``) and
    ``model_type`` (the checkpoint format a saved config must declare, if any).
    """

    option_names: ClassVar[tuple[str, ...]] = ()
    aliases: ClassVar[dict[str, str]] = {}
    model_type: ClassVar[str | None] = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an out-of-range option (nothing to check here)."""

    @classmethod
    def canonical(cls, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` with aliases resolved and numpy scalars turned into Python numbers.

        An unknown name raises :class:`ConfigError` naming the closest valid one.
        """
        out = {}
        for key, value in kwargs.items():
            name = cls.aliases.get(key, key)
            if name not in cls.option_names:
                valid = sorted(set(cls.option_names) | set(cls.aliases))
                raise ConfigError(
                    f"unknown option '{key}' for {cls.__name__}{closest(key, valid)}; "
                    f"valid options: {', '.join(valid)}"
                )
            # numpy scalars (np.float32(0.1), np.int64(3)) are the numbers they hold
            out[name] = value.item() if isinstance(value, np.generic) else value
        return out

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (tuples become lists, as JSON has them)."""
        return {
            name: list(v) if isinstance(v := getattr(self, name), tuple) else v
            for name in self.option_names
        }

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], **overrides) -> C:
        """Build from a saved dict plus keyword overrides.

        transformers' metadata keys and unknown keys of ``data`` are ignored; the overrides must
        be valid option names. A ``model_type`` other than the class's raises.
        """
        model_type = data.get("model_type")
        expected = cls.model_type
        if model_type is not None and expected is not None and model_type != expected:
            raise ConfigError(
                f"the checkpoint's config is for model_type '{model_type}', not '{expected}'"
            )
        known = {k: v for k, v in data.items() if k in cls.option_names}
        return cls(**{**known, **cls.canonical(overrides)})

    def replace(self: C, **overrides) -> C:
        """A copy with some options changed (validated; aliases accepted)."""
        return type(self)(**{**self.to_dict(), **self.canonical(overrides)})

    def to_json_string(self) -> str:
        """The options as indented, sorted JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


@dataclass_transform(kw_only_default=True)
def config_class(cls: type[C]) -> type[C]:
    """Make ``cls`` (a :class:`Config` subclass) a keyword-only dataclass with checked names.

    Its constructor accepts aliases, rejects unknown names with the closest valid one, and
    calls ``validate`` after every construction.
    """
    cls = dataclasses.dataclass(cls)
    cls.option_names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    dataclass_init = cls.__init__

    def __init__(self, **kwargs) -> None:
        dataclass_init(self, **type(self).canonical(kwargs))
        self.validate()

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls
