"""What determines the features an extraction writes.

These settings are recorded in every file an extraction writes and compared field by field
before a run adds to an existing file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError
from ..models.protocol import Detector

__all__ = ["ExtractSettings", "ExtractJob", "CONFIG_ATTR", "read_settings"]

#: The root attribute of a features file (and of each shard) holding the settings as JSON.
CONFIG_ATTR = "keypoints_config"


@dataclass(frozen=True)
class ExtractSettings:
    """The settings behind a features file; equal settings give equal features.

    Attributes:
        model: the detector's name (``Features.model``).
        fingerprint: a short hash of the detector's weights, options and precision
            (``Features.fingerprint``): other weights give another fingerprint even under the
            same name.
        options: the detector's options (its whole config), for people reading the file.
        precision: what the detector ran: ``"fp32"``, ``"bf16"`` or ``"int8"`` (``"fast"``
            is recorded as the precision it chose).
        resize: the preprocessing: longest side, ``(height, width)``, or None (native).
        half_descriptors: descriptors stored as float16.
    """

    model: str
    fingerprint: str
    options: Mapping[str, Any]
    precision: str
    resize: int | tuple[int, int] | None
    half_descriptors: bool

    @classmethod
    def of(
        cls,
        detector: Detector,
        resize: int | Sequence[int] | None,
        half_descriptors: bool = False,
    ) -> ExtractSettings:
        """The settings of extracting with a loaded ``detector``."""
        if resize is not None and not isinstance(resize, int):
            resize = (int(resize[0]), int(resize[1]))
        return cls(
            model=detector.name,
            fingerprint=detector.fingerprint,
            options=detector.config.to_dict(),
            precision=str(getattr(detector, "precision", "fp32")),
            resize=resize,
            half_descriptors=bool(half_descriptors),
        )

    def to_json(self) -> str:
        """The settings as one JSON object (sorted keys), as files record them."""
        data = asdict(self)
        data["options"] = dict(self.options)
        return json.dumps(data, sort_keys=True, default=list)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> ExtractSettings | None:
        """The settings a file recorded, or None when it recorded none or an older layout.

        An older layout is one written before keypoints recorded fingerprints.
        """
        if text is None:
            return None
        try:
            data = json.loads(text)
            names = {f.name for f in fields(cls)}
            if not isinstance(data, dict) or set(data) != names:
                return None
            if isinstance(data["resize"], list):
                data["resize"] = tuple(data["resize"])
            return cls(**data)
        except (ValueError, TypeError):
            return None

    def differences(self, other: ExtractSettings) -> list[str]:
        """``field: <self's value> != <other's value>`` for every field that differs.

        Options are compared option by option.
        """
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "options":
                for key in sorted(set(mine) | set(theirs)):
                    if mine.get(key) != theirs.get(key):
                        out.append(f"option {key}: {mine.get(key)!r} != {theirs.get(key)!r}")
            elif mine != theirs:
                out.append(f"{f.name}: {mine!r} != {theirs!r}")
        return out

    def check_same(self, recorded: str | bytes | None, where: str) -> None:
        """Raise :class:`ConfigError` naming the differing fields unless the settings match.

        The settings ``recorded`` in ``where`` (a file) must be these; files that recorded none
        pass.
        """
        if recorded is None:
            return
        previous = ExtractSettings.from_json(recorded)
        if previous is None:
            raise ConfigError(
                f"{where} was written by an older keypoints or another tool (its settings "
                f"record is {str(recorded)[:120]!r}); use another output file, or --overwrite "
                "to replace it"
            )
        diff = previous.differences(self)
        if diff:
            raise ConfigError(
                f"{where} was written with other settings (file != now): {'; '.join(diff)}. "
                "Use another output file, or --overwrite to replace it"
            )


@dataclass(frozen=True)
class ExtractJob:
    """One extraction run, as plain values an engine's workers need.

    The workers are a thread here, or a Ray actor elsewhere. The values: the settings, where the
    images are, where shards go, the pixel limit.
    """

    settings: ExtractSettings
    root: str
    parts: str
    max_pixels: int | None


def read_settings(path) -> ExtractSettings | None:
    """The settings a features file records.

    None for a file of another tool or an older keypoints.
    """
    import h5py

    with h5py.File(path, "r") as file:
        return ExtractSettings.from_json(file.attrs.get(CONFIG_ATTR))
