"""Finding and safely loading weights: local files, Hub-layout folders, the Hugging Face Hub.

Checkpoints are untrusted input: only safetensors and ``torch.load(weights_only=True)`` are used,
so a pickle that would run code is refused before any of it runs.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import sys
import threading
import time
import warnings
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
    "offline_mode",
    "hub_unreachable",
    "unreachable",
    "notice",
    "DownloadNotice",
    "HUB_CONNECT_TIMEOUT",
    "UnavailableError",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
PROCESSOR_NAME = "preprocessor_config.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
#: Seconds to wait for a TCP connection to the Hub (or the proxy to it) before a lookup: with no
#: network, huggingface_hub would otherwise retry for about half a minute per file.
HUB_CONNECT_TIMEOUT = 3.0
# how long a reachability answer is trusted, in seconds
_REACHABILITY_TTL = 60.0
_REACHABILITY: dict[tuple[str, int], tuple[float, str | None]] = {}
_ANNOUNCED: set[str] = set()


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


def _cache_location(cache_dir: str | os.PathLike | None = None) -> str:
    from huggingface_hub import constants

    return os.fspath(cache_dir) if cache_dir is not None else str(constants.HF_HUB_CACHE)


class UnavailableError(WeightsNotFoundError):
    """Weights are not cached and cannot be downloaded now (offline mode, no network).

    ``reason`` says why in a few words (``offline mode is on (HF_HUB_OFFLINE=1)``; the whole
    message when not given); the message adds what to do.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)  # args stay (message,): the error pickles across processes
        self.reason = reason or message


class DownloadNotice(UserWarning):
    """The category of keypoints' download notices ("looking up ... on the Hugging Face Hub").

    A notice is one line on stderr, ``keypoints: <message>``, printed unless warnings of this
    category are ignored: the command line's ``-q``, ``python -W ignore``, or
    ``warnings.simplefilter("ignore", DownloadNotice)`` silence it.
    """


def _notices_ignored(text: str) -> bool:
    """True when the warnings filters say to ignore a :class:`DownloadNotice` reading ``text``.

    The first matching filter decides, as for :func:`warnings.warn`.
    """
    for action, message, category, module, lineno in warnings.filters:
        if (
            (message is None or message.match(text))
            and issubclass(DownloadNotice, category)
            and (module is None or module.match(__name__))
            and not lineno
        ):
            return action == "ignore"
    return getattr(warnings, "defaultaction", "default") == "ignore"


def notice(message: str) -> None:
    """Print ``keypoints: <message>`` on stderr, unless notices are ignored.

    See :class:`DownloadNotice` for what silences them.
    """
    if not _notices_ignored(message):
        print(f"keypoints: {message}", file=sys.stderr, flush=True)


def offline_mode() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``KEYPOINTS_OFFLINE``) asks for no network."""
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("KEYPOINTS_OFFLINE"))
    return any(f and f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def _hub_offline() -> bool:
    """Offline mode, read now from the environment or as huggingface_hub read it at import."""
    from huggingface_hub import constants

    return offline_mode() or bool(constants.HF_HUB_OFFLINE)


def _endpoint_address(url: str) -> tuple[str, int]:
    """Host and port a request to ``url`` connects to first: its proxy's when one applies."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    host, scheme = parts.hostname or "", parts.scheme or "https"
    port = parts.port or (443 if scheme == "https" else 80)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxied.hostname:
            return proxied.hostname, proxied.port or (443 if proxied.scheme == "https" else 80)
    return host, port


def unreachable(url: str, timeout: float = HUB_CONNECT_TIMEOUT) -> str | None:
    """Why the server of ``url`` cannot be reached now, or None when it can.

    One TCP connection to its host (to the proxy's when ``HTTPS_PROXY``/``HTTP_PROXY``/
    ``ALL_PROXY`` applies), name resolution included, bounded by ``timeout`` seconds. No request
    is sent. ``file:`` URLs are always reachable. The answer is remembered for a minute.

    Args:
        url: an ``http(s)://`` (or ``file:``) URL.
        timeout: seconds to wait at most.

    Returns:
        None when a connection was accepted, else a short reason (``huggingface.co:443: Name or
        service not known``).
    """
    if url.startswith("file:"):
        return None
    address = _endpoint_address(url)
    known = _REACHABILITY.get(address)
    if known is not None and time.monotonic() - known[0] < _REACHABILITY_TTL:
        return known[1]
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc.strerror or str(exc) or type(exc).__name__)

    thread = threading.Thread(target=connect, daemon=True)  # name resolution has no timeout
    thread.start()
    thread.join(timeout)
    problem = outcome[0] if outcome else f"no answer within {timeout:g} s"
    reason = None if problem is None else f"{address[0]}:{address[1]}: {problem}"
    _REACHABILITY[address] = (time.monotonic(), reason)
    return reason


def hub_unreachable(timeout: float = HUB_CONNECT_TIMEOUT) -> str | None:
    """Why the Hugging Face Hub (``HF_ENDPOINT``) cannot be reached now, or None when it can.

    See :func:`unreachable`.
    """
    from huggingface_hub import constants

    return unreachable(constants.ENDPOINT, timeout)


def _offline_message(repo_id: str, what: str, hint: str, why: str, cache: str) -> str:
    return (
        f"could not get {what} of '{repo_id}' from the Hugging Face Hub: {why}, and it is not "
        f"in the local cache ({cache}). Fill the cache where the Hub is reachable "
        f"(`keypoints download {repo_id}`, then copy {cache} here or point HF_HUB_CACHE at "
        f"it), or {hint}"
    )


def _cached_hub_file(
    repo_id: str, filenames: Sequence[str], revision: str | None, cache: str | None
) -> Path | None:
    """The first of ``filenames`` in the local cache, without contacting the Hub."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache,
                                        local_files_only=True))  # fmt: skip
        except (hf_errors.LocalEntryNotFoundError, hf_errors.EntryNotFoundError):
            continue
    return None


def _hub_file(
    repo_id: str,
    filenames: Sequence[str],
    *,
    required: bool,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    hint: str,
    local_files_only: bool = False,
) -> Path | None:
    """Take from the cache, or else download, the first of ``filenames`` that the repo has.

    The cache is tried first without contacting the Hub, so cached weights load at once even
    where the network hangs rather than refuses (weights repos rarely change; pass a
    ``revision`` to pin one). The Hub is not contacted at all with ``local_files_only`` or in
    offline mode, nor when a quick connection test (:func:`hub_unreachable`) fails; before it
    is, one line says so on stderr (see :func:`notice`).
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    cache = os.fspath(cache_dir) if cache_dir is not None else None
    found = _cached_hub_file(repo_id, filenames, revision, cache)
    if found is not None:
        return found
    what = " or ".join(filenames)
    if local_files_only or _hub_offline():
        if not required:
            return None
        why = "not looked up (local files only)" if local_files_only else (
            "offline mode is on (HF_HUB_OFFLINE=1)")  # fmt: skip
        raise UnavailableError(_offline_message(repo_id, what, hint, why,
                                                _cache_location(cache)), why)  # fmt: skip
    if repo_id not in _ANNOUNCED:
        _ANNOUNCED.add(repo_id)
        notice(f"looking up {repo_id} on the Hugging Face Hub ...")
    problem = hub_unreachable()
    if problem is not None:
        if not required:
            return None
        why = f"the Hub is unreachable ({problem})"
        raise UnavailableError(_offline_message(repo_id, what, hint, why,
                                                _cache_location(cache)), why)  # fmt: skip
    offline = False
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache))
        except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled):
            offline = True  # the Hub stopped answering, or offline mode was switched on
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
        why = "the Hub did not answer"
        raise UnavailableError(_offline_message(repo_id, what, hint, why,
                                                _cache_location(cache)), why)  # fmt: skip
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
    local_files_only: bool = False,
) -> Checkpoint:
    """Resolve ``source`` to local files.

    ``source`` is a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``), a folder in
    the Hub layout (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``,
    ``preprocessor_config.json``), or a Hub id fetched with huggingface_hub (its cache,
    ``HF_HOME``/``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` apply). Only the parts asked for are
    looked up; a missing required part raises :class:`WeightsNotFoundError`.

    A Hub id is served from the cache when it holds the files; otherwise, unless
    ``local_files_only`` or offline mode forbids it, the line ``keypoints: looking up <repo> on
    the Hugging Face Hub ...`` goes to stderr (see :func:`notice`) and the files are downloaded,
    after a connection test that fails within :data:`HUB_CONNECT_TIMEOUT` seconds when the Hub
    is unreachable. ``keypoints download`` fills the cache this way.
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
                         hint=hint, local_files_only=local_files_only)  # fmt: skip

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


def download_url(
    url: str,
    filename: str,
    hint: str = "pass a local path instead",
    *,
    local_files_only: bool = False,
) -> Path:
    """Return the cached copy of ``url`` (``cache_dir() / filename``), downloading it if absent.

    The download is written to a temporary name, then renamed: never half a file. Before it
    starts, one line says so on stderr (see :func:`notice`); a server that does not accept a
    connection within :data:`HUB_CONNECT_TIMEOUT` seconds is not waited for.

    Args:
        url: where the file comes from.
        filename: its name in :func:`cache_dir`.
        hint: what else the user can do, ending the error message.
        local_files_only: never download: the cached copy or the error.

    Returns:
        The path of the cached file.

    Raises:
        WeightsNotFoundError: not cached, and offline mode (``HF_HUB_OFFLINE``),
            ``local_files_only`` or an unreachable server prevents the download.
    """
    import urllib.request

    target = cache_dir() / filename
    if target.is_file():
        return target
    if local_files_only or offline_mode():
        why = "it was not looked up (local files only)" if local_files_only else (
            "offline mode is on (HF_HUB_OFFLINE)")  # fmt: skip
        raise UnavailableError(
            f"'{filename}' is not in the cache ({target}) and {why}; download {url} to that "
            "path where the network is reachable (or run `keypoints download MODEL|PRESET` "
            f"there and copy {target.parent} here), or {hint}",
            why,
        )
    notice(f"downloading {url} ...")
    problem = unreachable(url)
    if problem is not None:
        raise UnavailableError(
            f"could not download {url} (unreachable: {problem}) and it is not cached at "
            f"{target}; {hint}",
            f"the server is unreachable ({problem})",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, target)
    except OSError as exc:
        raise UnavailableError(
            f"could not download {url} ({exc}) and it is not cached at {target}; {hint}",
            f"could not download {url} ({exc})",
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
