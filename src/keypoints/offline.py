"""Preparing an offline machine: fill the caches a later run reads (``keypoints download``).

:func:`download` takes detector names, preset names, LightGlue weights (``lightglue:NAME``) and
Hub ids, and fetches what each needs with the very functions that load it later, so that a run
with ``HF_HUB_OFFLINE=1`` finds every file:

- Hub files (SuperPoint: ``magic-leap-community/superpoint``) through
  :func:`keypoints.models.weights.resolve_checkpoint` into huggingface_hub's cache
  (``HF_HOME``/``HF_HUB_CACHE``);
- release files (cvg's LightGlue weights, the MIT SuperPoint) through
  :func:`keypoints.models.weights.download_url` into keypoints' cache
  (:func:`keypoints.models.weights.cache_dir`: ``KEYPOINTS_CACHE``, else ``~/.cache/keypoints``);
- bundled weights (ALIKED, DISK, XFeat, ALIKED's LightGlue, LighterGlue) and OpenCV's detectors
  need nothing.

:data:`DATASETS` says where the evaluation datasets of ``keypoints eval homography`` come from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, KeypointsError, closest
from .models import aliked, disk, lightglue, superpoint, superpoint_open, xfeat
from .models.protocol import DetectorInfo
from .models.registry import MODELS
from .models.weights import cache_dir, looks_like_hub_id, resolve_checkpoint
from .presets import PRESETS

__all__ = [
    "download",
    "download_names",
    "DownloadResult",
    "Dataset",
    "DATASETS",
    "LIGHTGLUE_PREFIX",
    "hub_cache_dir",
]

#: ``lightglue:NAME`` names the LightGlue weights NAME (see
#: :data:`keypoints.models.lightglue.WEIGHT_NAMES`).
LIGHTGLUE_PREFIX = "lightglue:"

#: What :attr:`DownloadResult.status` can be.
STATUSES = ("bundled", "cached", "downloaded", "missing", "failed")


@dataclass(frozen=True)
class DownloadResult:
    """What one part of one name needs, and where it is now.

    Attributes:
        name: the name asked for (a detector, a preset, ``lightglue:NAME`` or a Hub id).
        what: which weights, for people (``detector superpoint (Hub:
            magic-leap-community/superpoint)``).
        status: ``"bundled"`` (ships with the package, or no weights: nothing to download),
            ``"cached"`` (was already in the cache), ``"downloaded"`` (is now), ``"missing"``
            (not in the cache; only when nothing was to be downloaded) or ``"failed"``.
        path: where the file is now (the weights file; None when there is none).
        reason: why it failed (None otherwise).
    """

    name: str
    what: str
    status: str
    path: Path | None = None
    reason: str | None = None

    @property
    def failed(self) -> bool:
        """True when the download failed."""
        return self.status == "failed"

    def as_dict(self) -> dict[str, Any]:
        """The result as plain values (``path`` as a string or None)."""
        return {
            "name": self.name,
            "what": self.what,
            "status": self.status,
            "path": None if self.path is None else str(self.path),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _Part:
    """One file (or folder) a name needs: how to find it offline, and how to fetch it.

    ``local`` returns its path without any network access, or None when it is absent;
    ``fetch`` downloads it and returns its path (raising :class:`KeypointsError`). A bundled
    part has no ``fetch``.
    """

    key: str
    what: str
    local: Callable[[], Path | None]
    fetch: Callable[[], Path] | None = None


def _resource_path(resource) -> Path | None:
    """The file system path of a package resource (None when it has none, e.g. in a zip)."""
    path = Path(str(resource))
    return path if path.exists() else None


def _bundled(key: str, what: str, resource) -> _Part:
    return _Part(key, what, lambda: _resource_path(resource))


def _no_weights(info: DetectorInfo) -> _Part:
    return _Part(f"none:{info.name}", f"detector {info.name} (OpenCV, no weights)", lambda: None)


def _hub(repo: str, what: str) -> _Part:
    """A Hub repository: its config and weights, as :func:`resolve_checkpoint` reads them.

    The processor config is fetched too when the repository has one (the transformers-compatible
    ``AutoImageProcessor`` reads it).
    """
    hint = "check the name"

    def local() -> Path | None:
        try:
            return resolve_checkpoint(repo, local_files_only=True).weights
        except KeypointsError:
            return None

    def fetch() -> Path:
        return resolve_checkpoint(repo, processor=True, hint=hint).weights_file

    return _Part(f"hub:{repo}", f"{what} (Hub: {repo})", local, fetch)


def _matcher(name: str) -> _Part:
    """LightGlue weights ``name``: bundled, or cvg's release file as LightGlue loads it."""
    what = f"LightGlue weights {name}"
    if name in lightglue.BUNDLED:
        return _bundled(f"lightglue:{name}", f"{what} (bundled)", lightglue.bundled_matcher(name))
    path = cache_dir() / lightglue.release_file(name)

    def local() -> Path | None:
        return path if lightglue.release_cached(name) else None

    def fetch() -> Path:
        # the function LightGlue.from_pretrained reads release weights with
        return Path(lightglue._release_path(name))

    return _Part(f"lightglue:{name}", f"{what} (cvg release)", local, fetch)


def _superpoint_open() -> _Part:
    info = superpoint_open.INFO
    path = cache_dir() / superpoint_open.WEIGHTS_FILE

    def local() -> Path | None:
        return path if info.available() else None

    def fetch() -> Path:
        # the function SuperPointOpen.from_pretrained reads its default weights with
        return Path(superpoint_open.SuperPointOpen().default_weights())

    return _Part(f"url:{superpoint_open.WEIGHTS_FILE}",
                 f"detector {info.name} (rpautrat/SuperPoint release)", local, fetch)  # fmt: skip


def _detector(name: str) -> _Part:
    """The weights the registered detector ``name`` loads by default."""
    info = MODELS[name]
    if info.kind == "handcrafted":
        return _no_weights(info)
    if name in aliked.INFOS:
        return _bundled(f"bundled:{name}", f"detector {name} (bundled)",
                        aliked.bundled_weights(name))  # fmt: skip
    if info is disk.INFO:
        return _bundled(f"bundled:{name}", f"detector {name} (bundled)", disk.bundled_weights())
    if info is xfeat.INFO:
        return _bundled(f"bundled:{name}", f"detector {name} (bundled)", xfeat.bundled_weights())
    if info is superpoint.INFO:
        return _hub(superpoint.DEFAULT_SOURCE, f"detector {name}")
    if info is superpoint_open.INFO:
        return _superpoint_open()
    raise ConfigError(f"keypoints download does not know where '{name}' takes its weights from")


def _parts(name: str) -> list[_Part]:
    """What ``name`` needs: a detector's weights; a preset's detector and LightGlue weights."""
    if name in MODELS:
        return [_detector(name)]
    if name in PRESETS:
        preset = PRESETS[name]
        parts = [_detector(preset.detector)]
        info = preset.info
        if preset.matcher in ("lightglue", "auto") and info and info.matcher_weights:
            parts.append(_matcher(info.matcher_weights))
        return parts
    if name.startswith(LIGHTGLUE_PREFIX):
        return [_matcher(name[len(LIGHTGLUE_PREFIX) :])]
    return [_hub(name, "checkpoint")]


def download_names() -> list[str]:
    """Every name :func:`download` takes besides Hub ids: detectors, presets, LightGlue weights."""
    weights = [f"{LIGHTGLUE_PREFIX}{n}" for n in lightglue.WEIGHT_NAMES]
    return [*MODELS, *PRESETS, *weights]


def _check(names: Iterable[str]) -> list[str]:
    """``names`` as a list; :class:`ConfigError` for the first unknown one (nothing is fetched)."""
    names = list(names)
    known = download_names()
    for name in names:
        if name not in known and not looks_like_hub_id(name):
            raise ConfigError(
                f"unknown model or preset '{name}'{closest(name, known)}; see `keypoints "
                "download --list` (a detector, a preset, lightglue:NAME or a Hub id namespace/name)"
            )
    return names


def _everything() -> list[str]:
    """Names covering every weights file: each detector and each LightGlue weights."""
    return [*MODELS, *(f"{LIGHTGLUE_PREFIX}{n}" for n in lightglue.WEIGHT_NAMES)]


def _settle(part: _Part, fetch: bool) -> tuple[str, Path | None, str | None]:
    """``(status, path, reason)`` of ``part``, downloading it when ``fetch`` and absent."""
    found = part.local()
    if part.fetch is None:
        return "bundled", found, None
    if found is not None:
        return "cached", found, None
    if not fetch:
        return "missing", None, None
    try:
        return "downloaded", part.fetch(), None
    except (KeypointsError, OSError) as exc:  # this part; the others go on
        return "failed", None, getattr(exc, "reason", None) or str(exc)


def download(
    names: str | Iterable[str] | None = None, *, fetch: bool = True
) -> list[DownloadResult]:
    """Fill the caches a later offline run reads, and say where each file is.

    Args:
        names: detector names (see :func:`keypoints.list_models`: their weights), preset names
            (see :func:`keypoints.list_presets`: the detector's weights and the LightGlue
            weights of the preset's matcher), ``lightglue:NAME`` (LightGlue weights NAME, e.g.
            ``lightglue:superpoint``) or Hub ids (``namespace/name``: config and weights).
            None: every detector's weights and every LightGlue weights (which covers every
            preset).
        fetch: False only looks: absent files are reported ``"missing"`` and nothing is
            downloaded.

    Returns:
        One :class:`DownloadResult` per part of each name, in order. A part two names share is
        fetched once. A part that fails to download is reported ``"failed"`` with the reason
        and the others go on: check :attr:`DownloadResult.failed`.

    Raises:
        ConfigError: an unknown name (with the closest known one), before anything is fetched.
    """
    asked = _everything() if names is None else _check([names] if isinstance(names, str) else names)
    settled: dict[str, tuple[str, Path | None, str | None]] = {}
    results = []
    for name in asked:
        for part in _parts(name):
            if part.key not in settled:
                settled[part.key] = _settle(part, fetch)
            status, path, reason = settled[part.key]
            results.append(DownloadResult(name, part.what, status, path, reason))
    return results


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps its downloads (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@dataclass(frozen=True)
class Dataset:
    """Where an evaluation dataset comes from and the layout ``keypoints eval`` reads.

    Attributes:
        name: the dataset's name.
        home: its project page.
        download: the archive(s) to fetch.
        layout: the folders and files :func:`keypoints.evaluation.datasets.load_dataset` expects.
        example: the commands that fetch it and evaluate on it.
    """

    name: str
    home: str
    download: str
    layout: str
    example: str


_OXFORD_FILES = "https://www.robots.ox.ac.uk/~vgg/research/affine/det_eval_files"

#: The homography datasets ``keypoints eval homography DATASET`` reads (never downloaded
#: automatically: fetch them once and pass the folder).
DATASETS: dict[str, Dataset] = {
    "hpatches": Dataset(
        name="HPatches sequences (Balntas et al. 2017; 116 sequences of 6 images)",
        home="https://github.com/hpatches/hpatches-dataset",
        download="http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-sequences-release.tar.gz",
        layout="hpatches-sequences-release/<sequence>/1.ppm .. 6.ppm and H_1_2 .. H_1_6 "
        "(sequences i_*: illumination, v_*: viewpoint)",
        example="wget http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-sequences-release.tar.gz\n"
        "tar -xzf hpatches-sequences-release.tar.gz\n"
        "keypoints eval homography hpatches-sequences-release",
    ),
    "oxford": Dataset(
        name="Oxford affine (Mikolajczyk et al. 2005; 8 sequences of 6 images)",
        home="https://www.robots.ox.ac.uk/~vgg/research/affine/",
        download=f"{_OXFORD_FILES}/<sequence>.tar.gz for bark, bikes, boat, graf, leuven, "
        "trees, ubc, wall",
        layout="oxford/<sequence>/img1.ppm (or .pgm) .. img6 and H1to2p .. H1to6p, one folder "
        "per sequence named after it (leuven: illumination, bikes and trees: blur, ubc: "
        "compression, the others: viewpoint); the archives hold the files without a folder",
        example="for s in bark bikes boat graf leuven trees ubc wall; do\n"
        f"  mkdir -p oxford/$s && wget -qO- {_OXFORD_FILES}/$s.tar.gz | tar -xz -C oxford/$s\n"
        "done\n"
        "keypoints eval homography oxford",
    ),
}
