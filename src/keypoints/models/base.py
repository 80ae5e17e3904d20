"""What every keypoint network shares.

The :class:`~keypoints.models.protocol.Detector` protocol on top of a batched tensor ``forward``,
device/dtype, backends, safe weight loading.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..defaults import DEFAULT_BACKEND, DEFAULT_PRECISION
from ..errors import WeightsError
from ..features import Features
from ..image import Prepared
from .protocol import (
    InfoFacts,
    accepts_images,
    features_from_prepared,
    fingerprint,
    state_digest,
)

__all__ = ["DeviceMixin", "KeypointModel", "load_checked"]


class DeviceMixin:
    """``device`` and ``dtype`` of a module's parameters, as transformers' models have them."""

    parameters: Callable[..., Iterator[nn.Parameter]]  # nn.Module's

    @property
    def device(self) -> torch.device:
        """The device of the module's parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the module's parameters."""
        return next(self.parameters()).dtype


class KeypointModel(InfoFacts, DeviceMixin, nn.Module):
    """Base of the learned detectors.

    The :class:`~keypoints.models.protocol.Detector` protocol (``prepare``, ``extract`` -> list of
    :class:`~keypoints.Features`, ``fingerprint``) on top of the network's batched ``forward``.

    Subclasses set ``config_class`` (a declared config), ``info`` (their registry entry, which also
    says what the input looks like) and implement ``forward(image, image_sizes=None, **options)``:
    ``image (B, C, H, W)`` float in [0, 1], ``image_sizes (B, 2)`` (height, width) of each image's
    valid region, per-call ``options`` overriding the config; it returns batched, padded
    ``keypoints (B, N, 2)`` (x, y) pixels of ``image``, ``scores (B, N)``, ``descriptors (B, N, D)``
    and ``mask (B, N)``.
    """

    config_class: type
    #: names of :meth:`dense_torch`'s outputs; models without them have no ONNX graph
    dense_output_names: tuple[str, ...] = ()

    def __init__(self, config=None, **overrides) -> None:
        """``config`` (default: the declared defaults), with keyword ``overrides`` applied."""
        super().__init__()
        config = config or self.config_class()
        self.config = config.replace(**overrides) if overrides else config
        self.backend = "torch"
        self.nms_backend = "torch"
        self.precision = "fp32"
        self._onnx = None

    def set_backend(self, backend: str = DEFAULT_BACKEND):
        """Choose the backend that runs the dense network; returns the model.

        Run the dense network with ``"torch"``, ``"onnxruntime"`` (the same graph exported and
        cached; falls back to torch with a warning when onnxruntime is missing), or ``"auto"``
        (onnxruntime when installed).
        """
        from .backends import onnxruntime_available, resolve_backend

        self.backend = resolve_backend(backend, supported=bool(self.dense_output_names))
        # NMS has its own small graph, so models without a dense graph get it too
        fast_nms = backend != "torch" and onnxruntime_available()
        self.nms_backend = "onnxruntime" if fast_nms else "torch"
        self._onnx = None
        return self

    #: what ``precision="fast"`` runs for this model: its fastest measured precision
    fast_precision = "bf16"

    def set_precision(self, precision: str = DEFAULT_PRECISION):
        """Choose the precision of the dense network; returns the model.

        ``"fp32"`` (default, parity); ``"bf16"``: the dense network under bfloat16 autocast,
        channels-last, in torch (faster where the CPU has avx512_bf16 or AMX; elsewhere it warns
        and stays fp32); ``"int8"``: models with an ONNX graph (SuperPoint) run its statically
        quantized version in onnxruntime (elsewhere it warns and runs ``fast_precision``);
        ``"fast"``: :attr:`fast_precision`. Keypoint selection and sampling stay fp32.
        """
        from .backends import resolve_precision

        self.precision = resolve_precision(
            precision, self.fast_precision, int8=bool(self.dense_output_names)
        )
        if self.precision == "bf16":
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return self

    def dense(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The dense maps of ``image`` on the selected backend and precision."""
        if self.precision == "bf16":
            image = image.contiguous(memory_format=torch.channels_last)
            with torch.autocast(image.device.type, dtype=torch.bfloat16):
                outputs = self.dense_torch(image)
            return tuple(o.float() for o in outputs)
        int8 = self.precision == "int8"
        if int8 or self.backend == "onnxruntime" and image.device.type == "cpu":
            onnx = self._onnx
            if (
                onnx is None
                or onnx.digest != state_digest(self)
                or onnx.precision != self.precision
            ):
                from .backends import OnnxDense  # (re)built when the weights changed

                onnx = self._onnx = OnnxDense(self, self.precision)
            return onnx(image)
        return self.dense_torch(image)

    def nms(self, scores: torch.Tensor, radius: int) -> torch.Tensor:
        """:func:`~keypoints.models.ops.simple_nms` of ``(B, H, W)`` scores on the backend.

        Identical results; onnxruntime's max-pooling is much faster on CPU.
        """
        on_cpu = scores.device.type == "cpu" and scores.dtype == torch.float32
        if self.nms_backend == "onnxruntime" and on_cpu:
            from .backends import onnx_nms

            return onnx_nms(scores, radius)
        from .ops import simple_nms

        return simple_nms(scores, radius)

    def dense_torch(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        """The dense maps of ``image`` in torch (subclasses with an ONNX graph implement it)."""
        raise NotImplementedError

    @property
    def input_channels(self) -> int:
        """1 for grayscale input, 3 for RGB."""
        return self.preprocessing.channels

    @property
    def fingerprint(self) -> str:
        """A short hash of the class, the weights, the options and the precision."""
        config = {name: getattr(self.config, name) for name in self.config_class.option_names}
        options = {"config": config, "precision": self.precision}
        return fingerprint(type(self).__name__, options, state_digest(self))

    @accepts_images
    def extract(self, images: Sequence[Prepared]) -> list[Features]:
        """Detect and describe prepared images (see :meth:`prepare`), in input order.

        Images of equal prepared size share a forward pass; none is padded to another's size,
        so each gets the keypoints it gets alone. Keypoints are in original-image pixels. Also
        takes one image or a list of images, as LightGlue's ``extract`` (see
        :func:`~.protocol.accepts_images`).
        """
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, item in enumerate(images):
            groups[item.image.shape].append(i)
        results: list[Features | None] = [None] * len(images)
        identity = self.fingerprint  # once per call: the weights do not change in between
        for indices in groups.values():
            batch = torch.from_numpy(np.stack([images[i].image for i in indices]))
            batch = batch[:, None] if batch.ndim == 3 else batch.permute(0, 3, 1, 2)
            sizes = torch.tensor([images[i].size for i in indices], device=self.device)
            with torch.inference_mode():
                out = self(batch.to(device=self.device, dtype=self.dtype), sizes)
            counts = out["mask"].sum(1).tolist()
            for j, i in enumerate(indices):
                n = counts[j]
                keypoints, scores, descriptors = (
                    out[k][j, :n].float().cpu() for k in ("keypoints", "scores", "descriptors")
                )
                results[i] = features_from_prepared(
                    self, images[i], keypoints, scores, descriptors, fingerprint=identity
                )
        return [r for r in results if r is not None]

    def __getstate__(self) -> dict:
        """Pickled without the onnxruntime session (rebuilt on first use), e.g. for Ray."""
        state = self.__dict__.copy()
        state["_onnx"] = None
        return state

    def load_weights(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load a state dict with this model's key names (see :func:`load_checked`)."""
        load_checked(self, state, strict)

    #: the names :meth:`from_pretrained` takes for the default weights (besides None)
    weight_names: tuple[str, ...] = ()

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike | None = None,
        *,
        strict: bool = True,
        backend: str = DEFAULT_BACKEND,
        precision: str = DEFAULT_PRECISION,
        **overrides,
    ):
        """Load the model with its weights.

        Args:
            source: None or one of :attr:`weight_names`: the default weights (see
                :meth:`default_weights`: bundled, or downloaded once); otherwise a checkpoint
                (``.pth`` read with ``weights_only=True``, or ``.safetensors``, with the
                reference's key names), a Hub-layout folder or a Hub id.
            strict: refuse weights with missing or unexpected keys.
            backend: see :meth:`set_backend`.
            precision: see :meth:`set_precision`.
            **overrides: options (see the model's config).

        Returns:
            The model in eval mode.
        """
        from .weights import read_weights

        if source is not None and os.fspath(source) in cls.weight_names:
            source, overrides = None, cls.named_options(os.fspath(source), overrides)
        model = cls(cls.config_class(**overrides))
        state = read_weights(source, model.default_weights() if source is None else None)
        return model.finish_loading(state, strict, backend, precision)

    @classmethod
    def named_options(cls, name: str, overrides: dict) -> dict:
        """The options a weights name of :attr:`weight_names` implies (e.g. ALIKED's variant)."""
        return overrides

    def default_weights(self):  # pragma: no cover - models loaded by name override it
        """The file of this model's default weights (a path or package resource)."""
        raise NotImplementedError(f"{type(self).__name__} has no default weights")

    def finish_loading(self, state, strict: bool, backend: str, precision: str):
        """Load ``state``, switch to eval mode, set backend and precision; returns the model.

        This is the end of every ``from_pretrained``.
        """
        self.load_weights(state, strict=strict)
        return self.eval().set_backend(backend).set_precision(precision)


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Load ``state`` into ``model`` after checking it fits, naming every problem.

    Wrong shapes always raise :class:`WeightsError`; missing or unexpected keys raise unless
    ``strict=False`` (missing layers then keep their initialisation, with a warning).
    """
    own = model.state_dict()
    kind = type(model).__name__
    wrong = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if wrong:
        raise WeightsError(f"weights do not fit {kind}: wrong shapes for {', '.join(wrong)}")
    # integer tensors where the model has floats (they would load, converted, and give no
    # keypoints), and NaN or infinite values, are damaged checkpoints
    common = [k for k in own if k in state and own[k].is_floating_point()]
    integral = [f"{k} ({state[k].dtype})" for k in common if not state[k].is_floating_point()]
    if integral:
        raise WeightsError(
            f"weights do not fit {kind}: integer tensors where floats are expected: "
            f"{', '.join(integral[:5])}" + (" ..." if len(integral) > 5 else "")
        )
    broken = [k for k in common if not bool(torch.isfinite(state[k]).all())]
    if broken:
        raise WeightsError(
            f"the weights hold NaN or infinite values in {', '.join(broken[:5])}"
            + (" ..." if len(broken) > 5 else "")
            + "; the checkpoint is damaged"
        )
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems = []
    if missing:
        problems.append(f"missing keys {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {', '.join(unexpected)}")
    if problems and strict:
        raise WeightsError(
            f"weights do not fit {kind}: {'; '.join(problems)}. In Python, strict=False loads "
            "them anyway (missing layers keep their random initialisation)"
        )
    if problems:
        warnings.warn(f"{kind} loaded with {'; '.join(problems)}", stacklevel=3)
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
