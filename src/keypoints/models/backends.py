"""Where a model's dense network runs: PyTorch, or onnxruntime on the same graph exported once.

Only the dense maps go through a backend (for SuperPoint: the keypoint heatmap and the dense
descriptors); NMS, keypoint selection and descriptor sampling stay in torch. The exported graph
is cached on disk, keyed by a hash of the model's weights and config, so the export (about a
second) happens once per model and machine. When onnxruntime is not installed, ``"auto"`` runs
torch silently and an explicit ``"onnxruntime"`` falls back to torch with a warning.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..defaults import BACKENDS, PRECISIONS
from ..errors import ConfigError, KeypointsError, closest
from .protocol import fingerprint, state_digest
from .weights import cache_dir

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "onnxruntime_available",
    "export_onnx",
    "OnnxDense",
    "resolve_backend",
    "resolve_precision",
    "cpu_has_bf16",
    "calibration_images",
    "quantize_int8",
]

OPSET = 17
#: The opsets torch's TorchScript-based ONNX exporter writes (we export with ``dynamo=False``).
_OPSETS = (9, 20)


def onnxruntime_available() -> bool:
    """True when onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(name: str, supported: bool = True) -> str:
    """``"auto"`` -> onnxruntime when installed (and the model supports it), else torch."""
    if name not in BACKENDS:
        raise ConfigError(
            f"unknown backend '{name}'{closest(name, BACKENDS)}; allowed: {', '.join(BACKENDS)}"
        )
    if name == "torch":
        return "torch"
    if not supported:
        if name == "onnxruntime":
            warnings.warn("this model has no ONNX graph yet; running it with torch", stacklevel=3)
        return "torch"
    if onnxruntime_available():
        return "onnxruntime"
    if name == "onnxruntime":
        warnings.warn(
            "onnxruntime is not installed (pip install onnxruntime); running with torch",
            stacklevel=3,
        )
    return "torch"


def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (x86 avx512_bf16 or AMX).

    Read from /proc/cpuinfo, so False where that file is absent.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, fast: str = "bf16", int8: bool = False) -> str:
    """The precision to run for the requested ``name``.

    Args:
        name: one of :data:`PRECISIONS`.
        fast: what ``"fast"`` means for this model (its fastest measured precision).
        int8: whether the model has an int8 mode (an onnxruntime graph).

    ``"int8"`` on a model without one warns and runs its ``fast`` precision; ``"int8"``
    without onnxruntime warns and runs bf16; ``"bf16"`` on a CPU without native bfloat16 warns
    and runs fp32. ``"fast"`` picks silently along the same lines.
    """
    if name not in PRECISIONS:
        raise ConfigError(
            f"unknown precision '{name}'{closest(name, PRECISIONS)}; allowed: "
            f"{', '.join(PRECISIONS)}"
        )
    quiet = name == "fast"
    if quiet:
        name = fast
    if name == "int8" and not int8:
        if not quiet:
            warnings.warn(
                f"this model has no int8 mode; running its fast precision ({fast})", stacklevel=3
            )
        name = "bf16" if fast == "int8" else fast
    if name == "int8" and not onnxruntime_available():
        if not quiet:
            warnings.warn(
                "int8 runs in onnxruntime, which is not installed (pip install "
                "onnxruntime); running bf16",
                stacklevel=3,
            )
        name = "bf16"
    if name == "bf16" and not cpu_has_bf16():
        if quiet:
            return "fp32"
        warnings.warn(
            "this CPU has no native bfloat16 (avx512_bf16 or AMX): bf16 would be slower, "
            "running fp32",
            stacklevel=3,
        )
        return "fp32"
    return name


class _DenseGraph(nn.Module):
    """The part of a model that is exported: image -> dense maps."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        return self.model.dense_torch(image)


def export_onnx(model, path: str | os.PathLike, opset: int = OPSET) -> Path:
    """Export ``model``'s dense network to ONNX at ``path``, written atomically.

    Batch, height and width are dynamic (keypoint selection is kept outside the graph). Inputs:
    ``image`` ``(B, C, H, W)`` float32; outputs: the model's ``dense_output_names``.
    """
    from ..io import atomic_write

    low, high = _OPSETS
    if not isinstance(opset, int) or not low <= opset <= high:
        raise ConfigError(f"opset {opset} is not supported by torch's exporter; allowed: "
                          f"{low} to {high}")  # fmt: skip
    channels = model.input_channels
    example = torch.rand(1, channels, 64, 96)
    names = list(model.dense_output_names)
    dims = {0: "batch", 2: "height", 3: "width"}
    dynamic = {"image": dims, **{n: {0: "batch"} for n in names}}
    graph = _DenseGraph(model).eval()

    def write(tmp: str) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (example,), tmp, input_names=["image"], output_names=names,
                dynamic_axes=dynamic, opset_version=opset, dynamo=False,
            )  # fmt: skip

    return atomic_write(path, write)


def graph_hash(model) -> str:
    """A short hash of what the exported graph depends on.

    That is the model's class, config and weights, and the torch version that exports it.
    """
    options = {"config": model.config.to_dict(), "torch": torch.__version__}
    return fingerprint(type(model).__name__, options, state_digest(model))


#: How int8 graphs are made; part of their cache key, so a change re-quantizes. Static
#: quantization (onnxruntime's QDQ format): weights int8 per output channel, activations uint8
#: per tensor, ranges by min/max over CALIBRATION_COUNT synthetic images (below). u8 x s8
#: products run on VNNI (avx512_vnni / avx_vnni) where the CPU has it.
INT8_RECIPE = "qdq-u8s8-perchannel-minmax-synthetic8-v1"
CALIBRATION_COUNT = 8


def calibration_images(
    channels: int, count: int = CALIBRATION_COUNT, size: tuple[int, int] = (480, 640)
) -> list[np.ndarray]:
    """Deterministic synthetic calibration images: ``count`` float32 ``(1, C, H, W)`` in [0, 1].

    Piecewise-smooth scenes (shaded background, overlapping polygons, ellipses and lines of
    random grey levels or colours, some with a sine texture), blurred a little, with sensor-like
    noise: the statistics the activation ranges need (edges, corners, flat areas, texture),
    generated from a fixed seed so every machine quantizes the same way and no image data has to
    ship with the package. (On SuperPoint's released weights they gave dense descriptors as
    close to fp32 as calibrating on real photographs: mean cosine 0.996-0.998 against
    0.994-0.997 on three Oxford images; the docs' Speed page, "Fast mode", has the accuracy cost.)
    """
    from PIL import Image, ImageDraw, ImageFilter

    height, width = size
    rng = np.random.default_rng(20261201)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(count):
        gx, gy, base = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.8)
        shade = base + gx * xs / width + gy * ys / height
        canvas = Image.fromarray(
            np.clip(shade[..., None] * rng.uniform(0.6, 1.0, 3) * 255, 0, 255).astype(np.uint8)
        )
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(30, 60))):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            kind = rng.integers(0, 3)
            if kind == 0:
                corners = int(rng.integers(3, 7))
                cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(8, 120)
                angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
                draw.polygon(
                    [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles], fill=colour
                )
            elif kind == 1:
                x0, y0 = rng.uniform(-50, width), rng.uniform(-50, height)
                draw.ellipse(
                    [x0, y0, x0 + rng.uniform(5, 150), y0 + rng.uniform(5, 150)], fill=colour
                )
            else:
                points = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(2)]
                draw.line(points, fill=colour, width=int(rng.integers(1, 6)))
        array = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32) / 255
        period, phase = rng.uniform(3, 20), rng.uniform(0, 2 * np.pi)
        array = (
            array
            + 0.08
            * np.sin(2 * np.pi * xs / period + phase)[..., None]
            * (ys > height / 2)[..., None]
        )
        array = array + rng.normal(0, 0.02, array.shape).astype(np.float32)
        array = np.clip(array, 0, 1)
        if channels == 1:  # the grayscale SuperPoint reads (transformers' weights)
            array = array @ np.array([0.2989, 0.587, 0.114], dtype=np.float32)
            images.append(array[None, None].astype(np.float32))
        else:
            images.append(np.ascontiguousarray(array.transpose(2, 0, 1)[None], dtype=np.float32))
    return images


def quantize_int8(model, source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the int8 version of the fp32 ONNX graph ``source`` of ``model`` at ``path``.

    See :data:`INT8_RECIPE`; written atomically (a killed run leaves no partial graph).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..io import atomic_write

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.images = iter(calibration_images(model.input_channels))

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {"image": image}

    def write(tmp: str) -> None:
        # onnxruntime's quantization tools log through the root logger (installing a handler
        # on first use): keep both its advice and the handler out of the user's output
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        root.setLevel(logging.ERROR)
        prepared = f"{tmp}.prepared.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # shape inference and graph folding first: the quantized graph runs 2x faster
                # (its convolutions fuse with their quantize/dequantize pairs)
                quant_pre_process(str(source), prepared)
                quantize_static(
                    prepared, tmp, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                )  # fmt: skip
        finally:
            Path(prepared).unlink(missing_ok=True)
            root.setLevel(level)
            for handler in root.handlers[:]:
                if handler not in handlers:
                    root.removeHandler(handler)

    return atomic_write(path, write)


#: torch.onnx.export is not reentrant (two threads exporting at once fail with
#: ``AssertionError: in_onnx_export``): every export and quantization of this process takes it.
_EXPORT_LOCK = threading.RLock()


def _fallback_dir() -> Path:
    """A private temporary cache folder, for when the cache folder is not writable."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"keypoints-{uid}-cache" / "onnx"


def cached_file(path: Path, make: Callable[[Path], object]) -> Path:
    """``path``, made by ``make(path)`` (an atomic writer) unless it exists; returns where it is.

    Made once: threads of this process and other processes wait for the one making it (a lock
    file beside it). When the cache folder is not writable (read-only, full), the entry is made
    in a private temporary folder instead, with a warning.
    """
    from ..io.files import temp_prefix
    from ..io.locks import remove_orphans, waiting

    try:
        if path.is_file():
            return path
        with waiting(path), _EXPORT_LOCK:
            if not path.is_file():
                # temporaries of this entry found while holding its lock are a dead process's
                remove_orphans(path)
                for stale in path.parent.glob(f"{temp_prefix(path)}*.prepared.onnx"):
                    stale.unlink(missing_ok=True)
                make(path)
        return path
    except OSError as error:  # the folder, a full disk, the lock file (LockFileError)
        fallback = _fallback_dir() / path.name
        if path.parent == fallback.parent:
            raise KeypointsError(
                f"cannot write the ONNX graph {path} ({error}); pass backend='torch' "
                "(--backend torch)"
            ) from None
        warnings.warn(
            f"the cache folder {path.parent} is not writable ({error}); using "
            f"{fallback.parent} (set KEYPOINTS_CACHE to a writable folder to keep it)",
            stacklevel=3,
        )
        return cached_file(fallback, make)


def open_session(path: Path, make: Callable[[Path], object], options) -> tuple[Path, Any]:
    """An onnxruntime session on the cached graph ``path`` (made by ``make`` when absent).

    A cached file that onnxruntime cannot load (empty, truncated, corrupt) is deleted and made
    again, once, with a warning. Returns ``(path actually used, session)``.
    """
    import onnxruntime as ort

    for attempt in range(2):
        path = cached_file(path, make)
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return path, session
        except Exception as error:  # noqa: BLE001 - onnxruntime's errors share no base class
            if attempt:
                raise KeypointsError(
                    f"onnxruntime cannot load {path}, even made again ({error}); pass "
                    "backend='torch' (--backend torch)"
                ) from None
            warnings.warn(
                f"the cached ONNX graph {path} cannot be loaded ({str(error)[:200]}); "
                "making it again",
                stacklevel=3,
            )
            try:
                path.unlink()
            except OSError:  # a read-only cache: make it in the fallback folder
                path = _fallback_dir() / path.name
                path.unlink(missing_ok=True)
    raise AssertionError("unreachable")  # pragma: no cover


class OnnxDense:
    """An onnxruntime session on a model's exported dense graph (cached on disk)."""

    def __init__(self, model, precision: str = "fp32") -> None:
        """Open a session on ``model``'s dense graph, exporting it first unless cached.

        ``precision="int8"`` runs its statically quantized version (made once, cached).
        """
        import onnxruntime as ort

        self.digest, self.precision = state_digest(model), precision
        source = cache_dir() / "onnx" / f"{model.name}-{graph_hash(model)}.onnx"
        path = source
        if precision == "int8":
            recipe = fingerprint("int8", {"recipe": INT8_RECIPE}, source.stem)
            path = source.with_name(f"{source.stem}-int8-{recipe}.onnx")

        def make(target: Path) -> None:
            if precision != "int8":
                export_onnx(model, target)
                return
            fp32 = cached_file(target.with_name(source.name), lambda t: export_onnx(model, t))
            quantize_int8(model, fp32, target)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        # idle onnxruntime threads must not spin: torch runs the next steps on the same cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # onnxruntime's memory-pattern planner preallocates one block per input shape: without
        # it, peak RSS at 640x480 drops by about 150 MiB at the same speed
        options.enable_mem_pattern = False
        self.path, self.session = open_session(path, make, options)

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The dense maps of ``image`` ``(B, C, H, W)``, as torch tensors on its device."""
        array = np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)
        outputs = self.session.run(None, {"image": array})
        return tuple(torch.from_numpy(o).to(image.device) for o in outputs)


class _NMSGraph(nn.Module):
    def __init__(self, radius: int) -> None:
        super().__init__()
        self.radius = radius

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        from .ops import simple_nms

        return simple_nms(scores, self.radius)


_NMS_SESSIONS: dict[int, Any] = {}


def onnx_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """:func:`keypoints.models.ops.simple_nms` run by onnxruntime.

    About 10x faster on CPU than torch's max-pooling here; max and equality are exact, so the result
    is identical. The small graph is exported once per radius and cached.
    """
    import onnxruntime as ort

    if radius == 0:
        return scores
    session = _NMS_SESSIONS.get(radius)
    if session is None:
        path = cache_dir() / "onnx" / f"nms-r{radius}-opset{OPSET}-torch{torch.__version__}.onnx"

        def make(target: Path) -> None:
            from ..io import atomic_write

            def write(tmp: str) -> None:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(
                        _NMSGraph(radius), (torch.rand(1, 16, 16),), tmp,
                        input_names=["scores"], output_names=["nms"],
                        dynamic_axes={"scores": {0: "b", 1: "h", 2: "w"}},
                        opset_version=OPSET, dynamo=False,
                    )  # fmt: skip

            atomic_write(target, write)

        options = ort.SessionOptions()
        # One thread, the caller's: an onnxruntime thread pool beside torch's OpenMP threads
        # slowed the next torch convolutions by half (measured: bf16 SuperPoint dense 180 ms
        # after a 2-thread NMS, 120 ms after a 1-thread one), and the NMS itself is faster so.
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = _NMS_SESSIONS[radius] = open_session(path, make, options)[1]
    array = np.ascontiguousarray(scores.detach().cpu().numpy(), dtype=np.float32)
    return torch.from_numpy(session.run(None, {"scores": array})[0]).to(scores.device)
