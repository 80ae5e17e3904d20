"""Finding and safely loading weights: local files, Hub-layout folders, the Hugging Face Hub.

Checkpoints are untrusted input: only safetensors and ``torch.load(weights_only=True)`` are used,
so a pickle that would run code is refused before any of it runs.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import WeightsError, WeightsNotFoundError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAMES",
    "PROCESSOR_NAME",
    "Checkpoint",
    "resolve_checkpoint",
    "load_state_dict",
    "looks_like_hub_id",
    "hub_cached",
    "cache_dir",
    "download_url",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
PROCESSOR_NAME = "preprocessor_config.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass
class Checkpoint:
    """What a source resolved to: local paths of the files that exist (None when absent)."""

    source: str
    weights: Path | None
    config: dict[str, Any] | None
    processor: dict[str, Any] | None

    @property
    def weights_file(self) -> Path:
        """The weights file; :class:`WeightsNotFoundError` when the source has none."""
        if self.weights is None:
            raise WeightsNotFoundError(f"'{self.source}' holds no weights")
        return self.weights


def looks_like_hub_id(source: str) -> bool:
    """``namespace/name`` that is not an existing path and has no weight-file suffix."""
    return (
        bool(_HUB_ID.match(source))
        and not os.path.exists(source)
        and not source.endswith(_WEIGHT_SUFFIXES)
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"'{path}' is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"'{path}' does not hold a JSON object")
    return data


def _cache_location() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _offline_message(repo_id: str, what: str, hint: str) -> str:
    return (
        f"could not get {what} of '{repo_id}' from the Hugging Face Hub: no network access "
        "(or HF_HUB_OFFLINE=1) and it is not in the local cache "
        f"({_cache_location()}). "
        f"Download it where the Hub is reachable (`hf download {repo_id}`), or {hint}"
    )


def _hub_file(
    repo_id: str,
    filenames: Sequence[str],
    *,
    required: bool,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    hint: str,
) -> Path | None:
    """Take from the cache, or else download, the first of ``filenames`` that the repo has.

    The cache is tried first without contacting the Hub, so cached weights load at once even
    where the network hangs rather than refuses (weights repos rarely change; pass a
    ``revision`` to pin one).
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    cache = os.fspath(cache_dir) if cache_dir is not None else None

    def fetch(filename: str) -> Path:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache,
                                        local_files_only=True))  # fmt: skip
        except hf_errors.LocalEntryNotFoundError:
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache))

    offline = False
    for filename in filenames:
        try:
            return fetch(filename)
        except hf_errors.LocalEntryNotFoundError:
            offline = True  # not cached and the Hub is unreachable or offline mode is on
        except hf_errors.OfflineModeIsEnabled:
            offline = True
        except hf_errors.RepositoryNotFoundError:
            raise WeightsNotFoundError(
                f"'{repo_id}' is not a model repository on the Hugging Face Hub (or it is "
                f"private or gated: log in with `hf auth login`); {hint}"
            ) from None
        except hf_errors.RevisionNotFoundError:
            raise WeightsNotFoundError(f"'{repo_id}' has no revision '{revision}'") from None
        except hf_errors.EntryNotFoundError:
            continue  # the repo exists but lacks this file: try the next name
        except (OSError, ValueError) as exc:
            raise WeightsError(f"could not download '{repo_id}': {exc}") from None
    if offline and required:
        raise WeightsNotFoundError(_offline_message(repo_id, " or ".join(filenames), hint))
    if required:
        raise WeightsNotFoundError(f"'{repo_id}' on the Hub has none of {', '.join(filenames)}")
    return None


def resolve_checkpoint(
    source: str | os.PathLike,
    *,
    weights: bool = True,
    config: bool = True,
    processor: bool = False,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    hint: str = "pass a local path instead",
) -> Checkpoint:
    """Resolve ``source`` to local files.

    ``source`` is a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``), a folder in
    the Hub layout (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``,
    ``preprocessor_config.json``), or a Hub id fetched with huggingface_hub (its cache,
    ``HF_HOME``/``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` apply). Only the parts asked for are
    looked up; a missing required part raises :class:`WeightsNotFoundError`.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_file():
        return Checkpoint(text, path if weights else None, None, None)
    if path.is_dir():
        found = next((path / n for n in WEIGHTS_NAMES if (path / n).is_file()), None)
        if weights and found is None:
            raise WeightsNotFoundError(
                f"folder '{path}' has no weights (expected {' or '.join(WEIGHTS_NAMES)})"
            )
        cfg, proc = path / CONFIG_NAME, path / PROCESSOR_NAME
        return Checkpoint(
            text,
            found if weights else None,
            _read_json(cfg) if config and cfg.is_file() else None,
            _read_json(proc) if processor and proc.is_file() else None,
        )
    if not looks_like_hub_id(text):
        raise WeightsNotFoundError(
            f"weights '{text}' not found: no such file or folder, and not a Hub id (namespace/name)"
        )

    def hub(names: Sequence[str], required: bool) -> Path | None:
        return _hub_file(text, names, required=required, revision=revision, cache_dir=cache_dir,
                         hint=hint)  # fmt: skip

    cfg = hub([CONFIG_NAME], True) if config else None
    proc = hub([PROCESSOR_NAME], processor) if processor else None
    found = hub(WEIGHTS_NAMES, True) if weights else None
    return Checkpoint(
        text,
        found,
        _read_json(cfg) if cfg else None,
        _read_json(proc) if proc else None,
    )


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a flat ``{name: tensor}`` dict from a safetensors file or a PyTorch checkpoint.

    PyTorch files are read with ``weights_only=True``: a pickle that would construct arbitrary
    objects (and could run code) is refused with :class:`WeightsError`. A checkpoint that wraps
    its weights in ``{"state_dict": ...}``, ``{"model": ...}`` or ``{"extractor": ...}`` (DISK's
    release) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file '{path}' does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file '{path}' is empty")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # SafetensorError and friends: corrupt or truncated
            raise WeightsError(
                f"'{path}' is not a valid safetensors file ({exc}); is it truncated?"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise WeightsError(
                f"refused to load '{path}': it holds Python objects other than tensors, and "
                "unpickling them could run code. Only safetensors files and plain state dicts "
                f"are accepted; convert it with code you trust. (torch said: {str(exc)[:200]})"
            ) from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
            raise WeightsError(
                f"'{path}' is not a readable PyTorch checkpoint ({str(exc)[:200]}); "
                "is it truncated or corrupt?"
            ) from None
    for key in ("state_dict", "model", "model_state_dict", "extractor"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"'{path}' does not hold a state dict of named tensors")
    return state


def read_weights(
    source: str | os.PathLike | None, default: Traversable | None = None
) -> dict[str, torch.Tensor]:
    """The state dict of a model's weights: ``source``, or ``default`` when it is None.

    ``source`` is a checkpoint path, a Hub-layout folder or a Hub id (see
    :func:`resolve_checkpoint`); ``default`` is the model's default file (a path, or a package
    resource of bundled weights). Both are read by :func:`load_state_dict`.
    """
    from importlib import resources

    if source is None:
        if default is None:
            raise WeightsNotFoundError("no weights given and the model has no default weights")
        with resources.as_file(default) as path:
            return load_state_dict(path)
    return load_state_dict(resolve_checkpoint(source, config=False).weights_file)


def hub_cached(repo_id: str, filename: str = CONFIG_NAME) -> bool:
    """True when ``filename`` of the Hub repository ``repo_id`` is in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def cache_dir() -> Path:
    """Where downloaded non-Hub weights live.

    ``$KEYPOINTS_CACHE``, else ``$XDG_CACHE_HOME/keypoints`` or ``~/.cache/keypoints``.
    """
    if os.environ.get("KEYPOINTS_CACHE"):
        return Path(os.environ["KEYPOINTS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "keypoints"


def offline_mode() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``KEYPOINTS_OFFLINE``) asks for no network."""
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("KEYPOINTS_OFFLINE"))
    return any(f and f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def download_url(url: str, filename: str, hint: str = "pass a local path instead") -> Path:
    """Return the cached copy of ``url`` (``cache_dir() / filename``), downloading it if absent.

    The download is written to a temporary name, then renamed: never half a file. Offline mode or an
    unreachable server with no cached copy raises :class:`WeightsNotFoundError`.
    """
    import urllib.request

    target = cache_dir() / filename
    if target.is_file():
        return target
    if offline_mode():
        raise WeightsNotFoundError(
            f"'{filename}' is not in the cache ({target}) and offline mode is on "
            f"(HF_HUB_OFFLINE); download {url} to that path where the network is reachable, "
            f"or {hint}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, target)
    except OSError as exc:
        raise WeightsNotFoundError(
            f"could not download {url} ({exc}) and it is not cached at {target}; {hint}"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
