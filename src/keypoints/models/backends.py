"""Where a model's dense network runs: PyTorch, or onnxruntime on the same graph exported once.

Only the dense maps go through a backend (for SuperPoint: the keypoint heatmap and the dense
descriptors); NMS, keypoint selection and descriptor sampling stay in torch. The exported graph
is cached on disk, keyed by a hash of the model's weights and config, so the export (about a
second) happens once per model and machine. When onnxruntime is not installed, ``"auto"`` runs
torch silently and an explicit ``"onnxruntime"`` falls back to torch with a warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..defaults import BACKENDS, PRECISIONS
from ..errors import ConfigError, closest
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
]

OPSET = 17


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
            "onnxruntime is not installed (pip install 'keypoints[onnx]'); running with torch",
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


def resolve_precision(name: str) -> str:
    """Check ``name``; ``"bf16"`` on a CPU without native bfloat16 warns and gives ``"fp32"``."""
    if name not in PRECISIONS:
        extra = "; int8 is not available yet" if name == "int8" else ""
        raise ConfigError(
            f"unknown precision '{name}'{closest(name, PRECISIONS)}; allowed: "
            f"{', '.join(PRECISIONS)}{extra}"
        )
    if name == "bf16" and not cpu_has_bf16():
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


class OnnxDense:
    """An onnxruntime session on a model's exported dense graph (cached on disk)."""

    def __init__(self, model) -> None:
        """Open a session on ``model``'s dense graph, exporting it first unless cached."""
        import onnxruntime as ort

        self.digest = state_digest(model)
        path = cache_dir() / "onnx" / f"{model.name}-{graph_hash(model)}.onnx"
        if not path.is_file():
            export_onnx(model, path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        # idle onnxruntime threads must not spin: torch runs the next steps on the same cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # onnxruntime's memory-pattern planner preallocates one block per input shape: without
        # it, peak RSS at 640x480 drops by about 150 MiB at the same speed
        options.enable_mem_pattern = False
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

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
        from ..io import atomic_write

        path = cache_dir() / "onnx" / f"nms-r{radius}-opset{OPSET}-torch{torch.__version__}.onnx"
        if not path.is_file():

            def write(tmp: str) -> None:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(
                        _NMSGraph(radius), (torch.rand(1, 16, 16),), tmp,
                        input_names=["scores"], output_names=["nms"],
                        dynamic_axes={"scores": {0: "b", 1: "h", 2: "w"}},
                        opset_version=OPSET, dynamo=False,
                    )  # fmt: skip

            atomic_write(path, write)
        options = ort.SessionOptions()
        # One thread, the caller's: an onnxruntime thread pool beside torch's OpenMP threads
        # slowed the next torch convolutions by half (measured: bf16 SuperPoint dense 180 ms
        # after a 2-thread NMS, 120 ms after a 1-thread one), and the NMS itself is faster so.
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        _NMS_SESSIONS[radius] = session
    array = np.ascontiguousarray(scores.detach().cpu().numpy(), dtype=np.float32)
    return torch.from_numpy(session.run(None, {"scores": array})[0]).to(scores.device)
