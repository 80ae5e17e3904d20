"""What every keypoint network shares: device/dtype, preprocessing needs, safe weight loading."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import WeightsError

__all__ = ["DeviceMixin", "KeypointModel", "load_checked"]


class DeviceMixin:
    """``device`` and ``dtype`` of a module's parameters, as transformers' models have them."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class KeypointModel(DeviceMixin, nn.Module):
    """Base of the learned detectors.

    Subclasses set ``config`` (a declared config), ``name``, and what their input looks like:
    ``input_channels`` (1: grayscale, 3: RGB) and ``pad_multiple`` (the pipeline zero-pads the
    right and bottom to a multiple of it and passes the valid sizes; 1 when the network pads
    itself). ``extract(image, image_sizes=None, **options)`` returns batched, padded
    ``keypoints (B, N, 2)`` (x, y) pixels of ``image``, ``scores (B, N)``,
    ``descriptors (B, N, D)`` and ``mask (B, N)``.
    """

    name = "model"
    input_channels = 1
    pad_multiple = 8
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

    def set_backend(self, backend: str = "auto"):
        """Run the dense network with ``"torch"``, ``"onnxruntime"`` (the same graph exported
        and cached; falls back to torch with a warning when onnxruntime is missing), or
        ``"auto"`` (onnxruntime when installed). Returns the model."""
        from .backends import onnxruntime_available, resolve_backend

        self.backend = resolve_backend(backend, supported=bool(self.dense_output_names))
        # NMS has its own small graph, so models without a dense graph get it too
        fast_nms = backend != "torch" and onnxruntime_available()
        self.nms_backend = "onnxruntime" if fast_nms else "torch"
        self._onnx = None
        return self

    def set_precision(self, precision: str = "fp32"):
        """``"fp32"`` (default) or ``"bf16"``: the dense network under bfloat16 autocast,
        channels-last, in torch (faster where the CPU has avx512_bf16 or AMX; elsewhere it
        warns and stays fp32). Keypoint selection and sampling stay fp32. Returns the model."""
        from .backends import resolve_precision

        self.precision = resolve_precision(precision)
        if self.precision == "bf16":
            self.to(memory_format=torch.channels_last)
        return self

    def dense(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The dense maps of ``image`` on the selected backend and precision."""
        if self.precision == "bf16":
            image = image.contiguous(memory_format=torch.channels_last)
            with torch.autocast(image.device.type, dtype=torch.bfloat16):
                outputs = self.dense_torch(image)
            return tuple(o.float() for o in outputs)
        if self.backend == "onnxruntime" and image.device.type == "cpu":
            if self._onnx is None:
                from .backends import OnnxDense

                self._onnx = OnnxDense(self)
            return self._onnx(image)
        return self.dense_torch(image)

    def nms(self, scores: torch.Tensor, radius: int) -> torch.Tensor:
        """:func:`~keypoints.models.ops.simple_nms` of ``(B, H, W)`` scores on the backend
        (identical results; onnxruntime's max-pooling is much faster on CPU)."""
        on_cpu = scores.device.type == "cpu" and scores.dtype == torch.float32
        if self.nms_backend == "onnxruntime" and on_cpu:
            from .backends import onnx_nms

            return onnx_nms(scores, radius)
        from .ops import simple_nms

        return simple_nms(scores, radius)

    def dense_torch(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, image: torch.Tensor, image_sizes: torch.Tensor | None = None, **options):
        """Same as :meth:`extract`."""
        return self.extract(image, image_sizes, **options)

    def extract(self, image, image_sizes=None, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    def load_weights(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load a state dict with this model's key names (see :func:`load_checked`)."""
        load_checked(self, state, strict)

    def prepared(self, state, strict: bool, backend: str, precision: str):
        """Load ``state``, switch to eval mode, set backend and precision: the end of every
        ``from_pretrained``. Returns the model."""
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
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems = []
    if missing:
        problems.append(f"missing keys {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {', '.join(unexpected)}")
    if problems and strict:
        raise WeightsError(
            f"weights do not fit {kind}: {'; '.join(problems)}. Pass strict=False to load "
            "them anyway (missing layers keep their random initialisation)"
        )
    if problems:
        warnings.warn(f"{kind} loaded with {'; '.join(problems)}", stacklevel=3)
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
