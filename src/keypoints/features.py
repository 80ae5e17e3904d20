"""``Features``: what every detector returns and everything downstream consumes."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

__all__ = ["Features", "Matches", "check_arrays"]


def check_arrays(data) -> None:
    """Raise :class:`~keypoints.errors.KeypointsError` unless ``data`` holds valid features.

    ``data`` maps hloc's names to arrays: ``keypoints (N, 2)`` finite numbers, ``scores (N,)``,
    ``descriptors (N, D)`` (float, or uint8 for binary ones), ``image_size (2,)`` positive
    integers, optional ``scales``/``oris`` ``(N,)``. The message names the first problem.
    """
    from .errors import KeypointsError

    for key in ("keypoints", "scores", "descriptors", "image_size"):
        if key not in data:
            raise KeypointsError(f"'{key}' is missing")
    arrays = {k: np.asarray(data[k]) for k in ("keypoints", "scores", "descriptors", "image_size")}
    kpts, n = arrays["keypoints"], len(arrays["keypoints"])
    problems = [
        (kpts.ndim == 2 and kpts.shape[1] == 2, f"keypoints must be (N, 2), not {kpts.shape}"),
        (np.issubdtype(kpts.dtype, np.number) and np.isfinite(kpts).all(),
         "keypoints must be finite numbers"),
        (arrays["scores"].shape == (n,), f"scores must be ({n},), not {arrays['scores'].shape}"),
        (arrays["descriptors"].ndim == 2 and len(arrays["descriptors"]) == n,
         f"descriptors must be ({n}, D), not {arrays['descriptors'].shape}"),
        (arrays["descriptors"].dtype == np.uint8
         or np.issubdtype(arrays["descriptors"].dtype, np.floating),
         f"descriptors must be float or uint8 (binary), not {arrays['descriptors'].dtype}"),
        (arrays["image_size"].shape == (2,) and np.issubdtype(arrays["image_size"].dtype,
                                                              np.number)
         and (arrays["image_size"] >= 1).all(),
         f"image_size must be two positive numbers (width, height), not {arrays['image_size']}"),
    ]  # fmt: skip
    for key in ("scales", "oris"):
        if key in data:
            shape = np.shape(data[key])
            problems.append((shape == (n,), f"{key} must be ({n},), not {shape}"))
    for ok, message in problems:
        if not ok:
            raise KeypointsError(message)


class _TensorRecord:
    """Equality, selection and device moves shared by :class:`Features` and :class:`Matches`.

    Subclasses are dataclasses listing their per-item tensors (first dimension: one row per
    keypoint or match) in ``_rows``; other fields are copied as they are.
    """

    _rows: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        """Same type and equal fields; tensors equal in dtype, shape and values."""
        if type(other) is not type(self):
            return NotImplemented
        for item in fields(self):  # type: ignore[arg-type]
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if isinstance(mine, torch.Tensor) or isinstance(theirs, torch.Tensor):
                if not (isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor)):
                    return False
                if mine.dtype != theirs.dtype or not torch.equal(mine.cpu(), theirs.cpu()):
                    return False
            elif mine != theirs:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable, like its tensors

    def __getitem__(self, index):
        """The rows ``index`` selects: a slice, integer indices, or a boolean mask.

        Accepts what torch indexing accepts (tensors, numpy arrays, lists); an int selects
        one row and keeps the dimension. Returns the same type, sharing nothing it need not.
        """
        if isinstance(index, int | np.integer):
            index = slice(int(index), int(index) + 1 or None)
        elif isinstance(index, np.ndarray | list):
            index = torch.as_tensor(np.asarray(index))
        values = {
            item.name: getattr(self, item.name)[index]
            if item.name in self._rows and getattr(self, item.name) is not None
            else getattr(self, item.name)
            for item in fields(self)  # type: ignore[arg-type]
        }
        return type(self)(**values)

    def to(self, device: str | torch.device):
        """A copy with every tensor on ``device``."""
        values = {
            item.name: value.to(device) if isinstance(value := getattr(self, item.name),
                                                      torch.Tensor) else value
            for item in fields(self)  # type: ignore[arg-type]
        }  # fmt: skip
        return type(self)(**values)

    def numpy(self) -> dict[str, np.ndarray]:
        """Everything as numpy arrays (:meth:`to_numpy`)."""
        return self.to_numpy()  # type: ignore[attr-defined]


@dataclass(eq=False)
class Features(_TensorRecord):
    """Keypoints, scores and descriptors of one image.

    Attributes:
        keypoints: ``(N, 2)`` float32 tensor of (x, y) in original-image pixels, pixel centres
            at integers (the top-left pixel's centre is (0, 0), as in OpenCV, LightGlue, hloc).
        scores: ``(N,)`` float32 detection scores (higher is better).
        descriptors: ``(N, D)`` descriptors (float32, L2-normalised for SuperPoint).
        image_size: ``(width, height)`` of the original image.
        model: name of the model that produced them, or None.
        binary: True for binary descriptors (ORB: uint8 (N, 32)), compared with the Hamming
            distance; False for float descriptors, compared with L2 / cosine.
        scales: ``(N,)`` float32 keypoint sizes in original-image pixels (OpenCV's
            ``KeyPoint.size``: SIFT, ORB), or None for models without a scale.
        orientations: ``(N,)`` float32 angles in radians (OpenCV's ``KeyPoint.angle`` converted),
            or None.
        fingerprint: a short hash of the detector's weights and options (see
            :attr:`keypoints.models.protocol.Detector.fingerprint`): features with equal
            ``model`` and ``fingerprint`` come from the same network with the same settings.
            None when unknown (e.g. read from a file written by another tool).
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    descriptors: torch.Tensor
    image_size: tuple[int, int]
    model: str | None = None
    binary: bool = False
    scales: torch.Tensor | None = None
    orientations: torch.Tensor | None = None
    fingerprint: str | None = None

    _rows = ("keypoints", "scores", "descriptors", "scales", "orientations")

    def __len__(self) -> int:
        """The number of keypoints."""
        return int(self.keypoints.shape[0])

    def __repr__(self) -> str:
        """A one-line summary: keypoints, descriptor shape, image size and model."""
        w, h = self.image_size
        return (
            f"Features({len(self)} keypoints, descriptors {tuple(self.descriptors.shape)}, "
            f"image {w}x{h}, model={self.model!r})"
        )

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Dict of numpy arrays, with hloc's names.

        ``keypoints`` (N, 2) float32, ``scores`` (N,), ``descriptors`` (N, D), ``image_size``
        (2,) int64 as (width, height), and when present ``scales`` (N,) and ``oris`` (N,)
        (hloc's names).
        """
        arrays = {
            "keypoints": self.keypoints.detach().cpu().numpy().astype(np.float32, copy=False),
            "scores": self.scores.detach().cpu().numpy(),
            "descriptors": self.descriptors.detach().cpu().numpy(),
            "image_size": np.asarray(self.image_size, dtype=np.int64),
        }
        for key, value in (("scales", self.scales), ("oris", self.orientations)):
            if value is not None:
                arrays[key] = value.detach().cpu().numpy().astype(np.float32, copy=False)
        return arrays

    def to_dict(self) -> dict[str, torch.Tensor]:
        """Dict of tensors with LightGlue-style keys, unbatched.

        ``keypoints`` (N, 2), ``keypoint_scores`` (N,), ``descriptors`` (N, D), ``image_size``
        (2,) float32 (width, height). Add a leading batch dimension (``v[None]``) to feed
        LightGlue itself.
        """
        return {
            "keypoints": self.keypoints,
            "keypoint_scores": self.scores,
            "descriptors": self.descriptors,
            "image_size": torch.tensor(self.image_size, dtype=torch.float32),
        }

    def to_cv2(self, size: float = 8.0) -> list:
        """List of ``cv2.KeyPoint`` (same pixel convention as ours).

        ``response`` is the score; ``size`` and ``angle`` are the keypoints' own when the
        detector gives them (SIFT, ORB: ``scales`` in pixels, ``orientations`` in radians,
        converted to OpenCV's degrees), else the given diameter ``size`` (SuperPoint has no
        scale; 8 px is one cell) and -1 (no angle).
        """
        import cv2

        kpts = self.keypoints.detach().cpu().tolist()
        scores = self.scores.detach().cpu().tolist()
        count = len(kpts)
        sizes = [size] * count if self.scales is None else self.scales.detach().cpu().tolist()
        if self.orientations is None:
            angles = [-1.0] * count
        else:
            angles = (np.degrees(self.orientations.detach().cpu().numpy()) % 360).tolist()
        return [
            cv2.KeyPoint(float(x), float(y), float(d), float(a), float(s))
            for (x, y), s, d, a in zip(kpts, scores, sizes, angles)
        ]

    @classmethod
    def from_numpy(cls, data, model: str | None = None, fingerprint: str | None = None) -> Features:
        """Inverse of :meth:`to_numpy` (accepts the dict or an opened ``.npz``).

        The arrays are checked (see :func:`check_arrays`): data read from a file is untrusted.
        """
        check_arrays(data)
        w, h = (int(v) for v in np.asarray(data["image_size"]).tolist())

        def optional(key):
            if key not in data:
                return None
            return torch.from_numpy(np.asarray(data[key], dtype=np.float32).reshape(-1))

        return cls(
            keypoints=torch.from_numpy(np.asarray(data["keypoints"], dtype=np.float32)),
            scores=torch.from_numpy(np.asarray(data["scores"])),
            descriptors=torch.from_numpy(np.asarray(data["descriptors"])),
            image_size=(w, h),
            model=model,
            binary=np.asarray(data["descriptors"]).dtype == np.uint8,
            scales=optional("scales"),
            orientations=optional("oris"),
            fingerprint=fingerprint,
        )


@dataclass(eq=False)
class Matches(_TensorRecord):
    """Correspondences between two :class:`Features`.

    Attributes:
        indices: ``(K, 2)`` int64, row ``(i, j)`` pairs keypoint i of the first image with
            keypoint j of the second; sorted by i.
        distances: ``(K,)`` float32 descriptor distances (L2, cosine distance ``1 - cos``, or
            Hamming bits), lower is better; for a learned matcher, ``1 - scores``.
        scores: ``(K,)`` float32 match confidences in [0, 1] from a learned matcher (LightGlue's
            matching scores), higher is better; None for nearest-neighbour matching.
        method: the method that produced them, ``"lightglue"`` or ``"mnn"`` (what
            ``method="auto"`` chose); None when unknown (e.g. read back from a file).
    """

    indices: torch.Tensor
    distances: torch.Tensor
    scores: torch.Tensor | None = None
    method: str | None = None

    _rows = ("indices", "distances", "scores")

    def __len__(self) -> int:
        """The number of matches."""
        return int(self.indices.shape[0])

    def __repr__(self) -> str:
        """``Matches(K)``, K the number of matches."""
        return f"Matches({len(self)})"

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Dict of numpy arrays: ``indices``, ``distances``, and ``scores`` when present."""
        arrays = {"indices": self.indices.cpu().numpy(), "distances": self.distances.cpu().numpy()}
        if self.scores is not None:
            arrays["scores"] = self.scores.cpu().numpy()
        return arrays
