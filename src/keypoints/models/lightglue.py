"""LightGlue in plain PyTorch: the matcher, given keypoints and descriptors of image pairs.

Lindenberger, Sarlin, Pollefeys, "LightGlue: Local Feature Matching at Light Speed", ICCV 2023.

Parameter names follow transformers' ``LightGlueForKeypointMatching`` (without its
``keypoint_detector.`` part), so its checkpoints load as they are; the numbers follow the same
implementation (rotary positional encoding, self and cross attention with
``scaled_dot_product_attention``, the double-softmax assignment with matchability, token
confidence for adaptive depth, matchability pruning for adaptive width). Pairs are batched and
padded with masks.

The transformers-compatible classes wrapping it are in :mod:`keypoints.hf.lightglue`;
:class:`LightGlue` loads cvg's release checkpoints (their key layout mapped by
:func:`convert_cvg_state_dict`) and serves :func:`keypoints.match` (``method="lightglue"``).
"""

from __future__ import annotations

import math
import os
import re
from importlib import resources
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import DEFAULT_PRECISION
from ..errors import ConfigError, WeightsError, WeightsNotFoundError
from .base import DeviceMixin, load_checked
from .config import Config, config_class

__all__ = [
    "CVG_FEATURES",
    "CVG_LICENSE",
    "release_cached",
    "CVG_URL",
    "BUNDLED",
    "WEIGHT_NAMES",
    "RELEASE_OPTIONS",
    "bundled_matcher",
    "matcher_part",
    "weights_license",
    "LightGlue",
    "LightGlueMatcherConfig",
    "LightGlueMatcher",
    "convert_cvg_state_dict",
    "config_from_state_dict",
    "normalize_keypoints",
    "matches_from_scores",
]


@config_class
class LightGlueMatcherConfig(Config):
    """The matcher's options (transformers' ``LightGlueConfig`` names).

    ``input_dim``: the detector's descriptor size (projected to ``descriptor_dim`` when they
    differ). ``depth_confidence``: stop a pair early once this fraction of its keypoints is
    confident (<= 0: never). ``width_confidence``: prune keypoints whose matchability is below
    ``1 - width_confidence`` (<= 0: never). ``filter_threshold``: minimum match score.
    ``add_scale_ori``: the positional encoding also reads each keypoint's scale and orientation
    (cvg's SIFT and DoG-HardNet weights).
    """

    input_dim: int = 256
    descriptor_dim: int = 256
    num_hidden_layers: int = 9
    num_attention_heads: int = 4
    depth_confidence: float = 0.95
    width_confidence: float = 0.99
    filter_threshold: float = 0.1
    add_scale_ori: bool = False

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an impossible architecture or threshold."""
        if self.descriptor_dim % self.num_attention_heads:
            raise ConfigError("descriptor_dim must be a multiple of num_attention_heads")
        if self.num_hidden_layers < 1:
            raise ConfigError("num_hidden_layers must be >= 1")
        if not 0 <= self.filter_threshold <= 1:
            raise ConfigError(f"filter_threshold={self.filter_threshold} is out of [0, 1]")


# pure helpers ----------------------------------------------------------------------------------
def normalize_keypoints(keypoints: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Normalise keypoints as LightGlue does: centred, scaled by half the longest side.

    ``keypoints (B, N, 2)`` are (x, y) pixels of images of ``size (B, 2)`` = (width, height).
    """
    size = size.to(keypoints)
    shift = size / 2
    scale = size.max(-1).values / 2
    return (keypoints - shift[:, None, :]) / scale[:, None, None]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Interleaved rotation of pairs (x0, x1) -> (-x1, x0), as LightGlue's rotary encoding."""
    return torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)


def confidence_threshold(layer: int, num_layers: int) -> float:
    """The token-confidence threshold of ``layer``: 0.8 + 0.1 exp(-4 layer / num_layers)."""
    return min(max(0.8 + 0.1 * math.exp(-4.0 * layer / num_layers), 0.0), 1.0)


def log_double_softmax(similarity: torch.Tensor, matchability0: torch.Tensor,
                       matchability1: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Log assignment scores: dual softmax of the similarities plus log-sigmoid matchability.

    ``(B, M, N)`` similarities and ``(B, M, 1)``, ``(B, N, 1)`` matchability logits ->
    ``(B, M+1, N+1)`` scores; the last row and column are the "unmatched" bins.
    """
    batch, m, n = similarity.shape
    certainties = F.logsigmoid(matchability0) + F.logsigmoid(matchability1).transpose(1, 2)
    scores0 = F.log_softmax(similarity, 2)
    scores1 = F.log_softmax(similarity.transpose(-1, -2).contiguous(), 2).transpose(-1, -2)
    scores = similarity.new_zeros((batch, m + 1, n + 1))
    scores[:, :m, :n] = scores0 + scores1 + certainties
    scores[:, :-1, -1] = F.logsigmoid(-matchability0.squeeze(-1))
    scores[:, -1, :-1] = F.logsigmoid(-matchability1.squeeze(-1))
    return scores


def matches_from_scores(scores: torch.Tensor, threshold: float):
    """Mutual best matches of ``(B, M+1, N+1)`` log scores above ``threshold`` (probability).

    Returns ``matches0 (B, M)``, ``matches1 (B, N)`` (-1: unmatched) and their scores.
    """
    max0, max1 = scores[:, :-1, :-1].max(2), scores[:, :-1, :-1].max(1)
    m0, m1 = max0.indices, max1.indices
    mutual0 = torch.arange(m0.shape[1], device=m0.device)[None] == m1.gather(1, m0)
    mutual1 = torch.arange(m1.shape[1], device=m1.device)[None] == m0.gather(1, m1)
    zero = scores.new_tensor(0)
    scores0 = torch.where(mutual0, max0.values.exp(), zero)
    scores1 = torch.where(mutual1, scores0.gather(1, m1), zero)
    valid0 = mutual0 & (scores0 > threshold)
    valid1 = mutual1 & valid0.gather(1, m1)
    return torch.where(valid0, m0, -1), torch.where(valid1, m1, -1), scores0, scores1


# layers ----------------------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.o_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def shares_qk(self) -> bool:
        """True when queries and keys use one projection (cvg's cross attention: ``to_qk``)."""
        q, k = self.q_proj, self.k_proj
        return torch.equal(q.weight, k.weight) and torch.equal(q.bias, k.bias)

    def forward(self, x, source, mask, rotary=None, partner=False):
        """``x (B, N, D)`` attends to ``source (B, S, D)``.

        ``mask (B, S)`` marks the valid keys; ``rotary`` is ``(cos, sin)`` of
        ``(B, N, D/heads)`` for self-attention. ``partner``: ``source`` is ``x`` with the rows
        of each pair swapped (cross attention); with a shared query/key projection the keys
        are then the partner's queries, computed once (the same numbers, a quarter fewer
        projections).
        """
        batch, n, dim = x.shape

        def split(t):
            return t.view(batch, t.shape[1], self.heads, dim // self.heads).transpose(1, 2)

        q = split(self.q_proj(x))
        k = swap_pairs(q) if partner and self.shares_qk() else split(self.k_proj(source))
        v = split(self.v_proj(source))
        if rotary is not None:
            cos, sin = (r.unsqueeze(1) for r in rotary)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return self.o_proj(out.transpose(1, 2).reshape(batch, n, dim))


class MLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * dim, 2 * dim)
        self.layer_norm = nn.LayerNorm(2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.layer_norm(self.fc1(x))))


class TransformerLayer(nn.Module):
    """Self-attention (with rotary positions), then cross-attention within each pair.

    The two images of a pair are rows 2i and 2i+1; each attention is followed by an MLP on
    [x, message] with a residual.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attention, self.self_mlp = Attention(dim, heads), MLP(dim)
        self.cross_attention, self.cross_mlp = Attention(dim, heads), MLP(dim)

    def forward(self, x, rotary, mask):
        x = x + self.self_mlp(torch.cat([x, self.self_attention(x, x, mask, rotary)], -1))
        message = self.cross_attention(x, swap_pairs(x), swap_pairs(mask), partner=True)
        return x + self.cross_mlp(torch.cat([x, message], -1))


def swap_pairs(t: torch.Tensor) -> torch.Tensor:
    """Rows 2i and 2i+1 (the two images of pair i) swapped: ``(2B, ...)`` -> ``(2B, ...)``."""
    return t.reshape(-1, 2, *t.shape[1:]).flip(1).reshape(t.shape)


class MatchAssignment(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.final_projection = nn.Linear(dim, dim)
        self.matchability = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (2B, N, D)`` (pairs interleaved), ``mask (2B, N)`` -> ``(B, N+1, N+1)`` scores."""
        batch, n, dim = x.shape
        projected = (self.final_projection(x) / dim**0.25).reshape(-1, 2, n, dim)
        similarity = projected[:, 0] @ projected[:, 1].transpose(-1, -2)
        pair_mask = mask.reshape(-1, 2, n)
        valid = pair_mask[:, 0, :, None] & pair_mask[:, 1, None, :]
        similarity = similarity.masked_fill(~valid, torch.finfo(similarity.dtype).min)
        matchability = self.matchability(x).reshape(-1, 2, n, 1)
        return log_double_softmax(similarity, matchability[:, 0], matchability[:, 1])

    def matchability_probability(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.matchability(x)).squeeze(-1)


class TokenConfidence(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.token(x.detach())).squeeze(-1)


class PositionalEncoder(nn.Module):
    def __init__(self, dim: int, heads: int, inputs: int = 2) -> None:
        super().__init__()
        self.projector = nn.Linear(inputs, dim // heads // 2, bias=False)

    def forward(self, keypoints: torch.Tensor):
        angles = self.projector(keypoints).repeat_interleave(2, dim=-1)
        return torch.cos(angles), torch.sin(angles)


# the matcher -----------------------------------------------------------------------------------
class LightGlueMatcher(nn.Module):
    """LightGlue's matching network.

    ``forward(keypoints, descriptors, image_sizes, mask, scales_oris=None)`` takes B pairs
    stacked as ``keypoints (B, 2, N, 2)`` float (x, y) pixels, ``descriptors (B, 2, N,
    input_dim)``, ``image_sizes (B, 2, 2)`` (width, height) of each image, ``mask (B, 2, N)``
    bool (padding False) and, with ``add_scale_ori``, ``scales_oris (B, 2, N, 2)`` (scale in
    pixels, orientation in radians: OpenCV's ``KeyPoint.size``, and ``angle`` in radians), and
    returns ``matches (B, 2, N)`` int64 (index into the other image, -1 when unmatched),
    ``matching_scores (B, 2, N)`` and ``prune (B, 2, N)`` (the number of layers each keypoint
    went through).
    """

    def __init__(self, config: LightGlueMatcherConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or LightGlueMatcherConfig()
        self.config = config.replace(**overrides) if overrides else config
        c = self.config
        dim, heads = c.descriptor_dim, c.num_attention_heads
        self.input_projection = nn.Linear(c.input_dim, dim) if c.input_dim != dim else nn.Identity()
        self.positional_encoder = PositionalEncoder(dim, heads, 4 if c.add_scale_ori else 2)
        layers = range(c.num_hidden_layers)
        self.transformer_layers = nn.ModuleList([TransformerLayer(dim, heads) for _ in layers])
        self.match_assignment_layers = nn.ModuleList([MatchAssignment(dim) for _ in layers])
        self.token_confidence = nn.ModuleList(
            [TokenConfidence(dim) for _ in range(c.num_hidden_layers - 1)]
        )

    precision = "fp32"

    def set_precision(self, precision: str = DEFAULT_PRECISION):
        """Set the precision, ``"fp32"`` (default), ``"bf16"``, ``"int8"`` or ``"fast"``.

        bf16 runs the transformer layers under bfloat16 autocast (faster where the CPU has
        avx512_bf16 or AMX; elsewhere it warns and stays fp32); the positions, token
        confidence, pruning and match assignment stay fp32. ``"int8"`` and ``"fast"`` run bf16
        where it pays, else fp32: LightGlue has no int8 mode (a pipeline's int8 is its
        detector's). Returns the model.
        """
        from .backends import resolve_precision

        self.precision = resolve_precision("fast" if precision == "int8" else precision, "bf16")
        return self

    def forward(self, keypoints, descriptors, image_sizes, mask, scales_oris=None):
        """Match B pairs of keypoints; see the class docstring for the inputs and outputs."""
        c = self.config
        batch, _, n, _ = keypoints.shape
        num_layers = c.num_hidden_layers
        device = keypoints.device
        results = (
            torch.full((batch * 2, n), -1, dtype=torch.long, device=device),  # matches
            keypoints.new_zeros((batch * 2, n)),  # matching scores
            torch.full((batch * 2, n), num_layers, dtype=torch.long, device=device),  # prune
        )
        if n == 0:
            return tuple(t.reshape(batch, 2, n) for t in results)

        # 1. inputs: pairs interleaved as rows 2i, 2i+1; normalised positions, rotary encoding
        mask = mask.reshape(batch * 2, n).bool()
        x, cos, sin = self._embed(keypoints, descriptors, image_sizes, scales_oris)
        rows = torch.arange(batch * 2, device=device)  # the output row of each row
        index = torch.arange(n, device=device).expand(batch * 2, n)  # original ids, -1: padding
        seen = torch.ones((batch * 2, n), dtype=torch.long, device=device)  # by original id
        valid_per_pair = mask.reshape(batch, -1).sum(1)  # fixed at the start, as transformers
        prune = c.width_confidence > 0

        for layer in range(num_layers):
            # 2. one self + cross attention layer
            with torch.autocast(device.type, torch.bfloat16, enabled=self.precision == "bf16"):
                x = self.transformer_layers[layer](x, (cos, sin), mask)
            x = x.float()
            # 3. adaptive depth: pairs whose keypoints are confident enough stop here
            stop, confidences = self._confident_pairs(layer, x, mask, valid_per_pair)
            if stop is not None and stop.any():
                r = stop.repeat_interleave(2)
                self._finish(layer, x[r], mask[r], rows[r], index[r],
                             seen[r] if prune else None, results)  # fmt: skip
                k = ~r
                x, cos, sin, mask, rows, index, seen = (
                    t[k] for t in (x, cos, sin, mask, rows, index, seen)
                )
                valid_per_pair = valid_per_pair[~stop]
                confidences = confidences[k] if confidences is not None else None
            if stop is not None and stop.all():
                break
            if prune:
                # 4. adaptive width: drop keypoints unlikely to match, unless unsure
                head = cast(MatchAssignment, self.match_assignment_layers[layer])
                matchable = head.matchability_probability(x)
                keep = matchable > 1 - c.width_confidence
                if confidences is not None:
                    keep |= confidences <= confidence_threshold(layer, num_layers)
                keep &= mask
                seen.scatter_add_(1, index.clamp(min=0), keep.long())
                x, cos, sin, mask, index = _pack(keep, x, cos, sin, mask, index)
        return tuple(t.reshape(batch, 2, n) for t in results)

    def _embed(self, keypoints, descriptors, image_sizes, scales_oris):
        """Projected descriptors ``(2B, N, dim)`` and the rotary encoding ``(cos, sin)``.

        The encoding reads the normalised positions, and the scales and orientations when the
        weights were trained with them.
        """
        batch, _, n, _ = keypoints.shape
        points = normalize_keypoints(keypoints.reshape(batch * 2, n, 2),
                                     image_sizes.reshape(batch * 2, 2))  # fmt: skip
        if self.config.add_scale_ori:
            if scales_oris is None:
                raise ConfigError("these LightGlue weights need keypoint scales and orientations")
            points = torch.cat([points, scales_oris.reshape(batch * 2, n, 2).to(points)], -1)
        x = self.input_projection(descriptors.reshape(batch * 2, n, -1).contiguous())
        cos, sin = self.positional_encoder(points)
        return x, cos, sin

    def _confident_pairs(self, layer, x, mask, valid_per_pair):
        """Which pairs stop after ``layer``, and the token confidences.

        Returns ``stop (P,)`` bool (all True after the last layer) and ``confidences (2P, N)``
        (None at the last layer), or ``(None, None)`` when adaptive depth is off.
        """
        num_layers = self.config.num_hidden_layers
        if layer == num_layers - 1:
            return torch.ones(len(x) // 2, dtype=torch.bool, device=x.device), None
        if self.config.depth_confidence <= 0:
            return None, None
        confidences = self.token_confidence[layer](x)
        threshold = confidence_threshold(layer, num_layers)
        unsure = (confidences.masked_fill(~mask, 1) < threshold).reshape(len(x) // 2, -1)
        stop = 1.0 - unsure.float().sum(1) / valid_per_pair > self.config.depth_confidence
        return stop, confidences

    def _finish(self, layer, x, mask, rows, index, seen, results) -> None:
        """Match the pairs in ``x`` with the assignment head of ``layer``.

        The results (in original keypoint ids) go into their output rows; ``seen`` (per
        original id) becomes the prune output when given, else the layer count.
        """
        out_matches, out_scores, out_prune = results
        scores = self.match_assignment_layers[layer](x, mask)
        m0, m1, s0, s1 = matches_from_scores(scores, self.config.filter_threshold)
        ids, targets = index.reshape(-1, 2, index.shape[-1]), rows.reshape(-1, 2)
        valid_pair = mask.reshape(-1, 2, mask.shape[-1])
        for side, (matches, values) in enumerate(((m0, s0), (m1, s1))):
            own, other = ids[:, side], ids[:, 1 - side]
            mapped = torch.where(matches < 0, -1, other.gather(1, matches.clamp(min=0)))
            # padding can only "match" padding: never reported (transformers leaves it in)
            valid = (own >= 0) & valid_pair[:, side]
            row = targets[:, side, None].expand_as(own)[valid]
            out_matches[row, own[valid]] = mapped[valid]
            out_scores[row, own[valid]] = values[valid].to(out_scores.dtype)
        out_prune[rows] = seen if seen is not None else layer + 1


def _pack(keep: torch.Tensor, *tensors: torch.Tensor):
    """Per row, move the entries where ``keep`` is True to the front, in order.

    Rows are padded to the longest: ``mask`` and padding with False/0, the last tensor
    (original ids) with -1.
    """
    counts = keep.sum(1)
    width = int(counts.max()) if len(counts) else 0
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    slot = torch.arange(width, device=keep.device)[None] < counts[:, None]
    packed = []
    for i, t in enumerate(tensors):
        extra = t.shape[2:]
        gathered = t.gather(1, order.view(*order.shape, *[1] * len(extra)).expand(
            *order.shape, *extra))  # fmt: skip
        fill = -1 if i == len(tensors) - 1 else 0
        where = slot.view(*slot.shape, *[1] * len(extra))
        packed.append(torch.where(where, gathered, torch.full_like(gathered, fill)))
    return packed


# checkpoints -----------------------------------------------------------------------------------
#: cvg's release checkpoints (Apache-2.0): github.com/cvg/LightGlue/releases/tag/v0.1_arxiv
CVG_URL = "https://github.com/cvg/LightGlue/releases/download/v0.1_arxiv/{}_lightglue.pth"
#: the features cvg released LightGlue weights for (``<name>_lightglue.pth``; cvg's
#: ``LightGlue.features``); the architecture (input size, scale/orientation inputs) is read
#: from the weights themselves
CVG_FEATURES = ("superpoint", "disk", "aliked", "sift", "doghardnet")
# cvg module names -> ours (transformers'), per layer
_CVG_LAYER = {
    "self_attn.out_proj": "self_attention.o_proj",
    "self_attn.ffn.0": "self_mlp.fc1",
    "self_attn.ffn.1": "self_mlp.layer_norm",
    "self_attn.ffn.3": "self_mlp.fc2",
    "cross_attn.to_v": "cross_attention.v_proj",
    "cross_attn.to_out": "cross_attention.o_proj",
    "cross_attn.ffn.0": "cross_mlp.fc1",
    "cross_attn.ffn.1": "cross_mlp.layer_norm",
    "cross_attn.ffn.3": "cross_mlp.fc2",
}


#: cvg's LightGlue weights are released under Apache-2.0 (github.com/cvg/LightGlue)
CVG_LICENSE = "Apache-2.0 (cvg/LightGlue)"
#: Matcher weights shipped inside the package (Apache-2.0; see weights/NOTICE): name -> file in
#: ``keypoints/weights``, in our names, by ``scripts/convert_lightglue_weights.py``; ALIKED's in
#: fp16 (measured by benchmarks/bench_fp16_matcher.py: 99.94% of the fp32 matches identical on
#: the 15 Oxford pairs, metrics within 0.003), loaded as fp32
BUNDLED = {
    "aliked": "aliked_lightglue.safetensors",
    "xfeat-lighterglue": "xfeat_lighterglue.safetensors",
}
#: LighterGlue (verlab/accelerated_features, Apache-2.0): LightGlue's network, 6 layers of one
#: head at width 96, trained on XFeat's 64-d descriptors, released inside ``xfeat-lighterglue.pt``
#: (under ``matcher.``, beside the extractor)
LIGHTERGLUE_URL = (
    "https://github.com/verlab/accelerated_features/raw/main/weights/xfeat-lighterglue.pt"
)
#: Options each release was trained and published with, where they differ from the defaults
#: (verlab's LighterGlue: no early stopping, pruning at 0.95)
RELEASE_OPTIONS: dict[str, dict[str, float]] = {
    "xfeat-lighterglue": {"depth_confidence": -1.0, "width_confidence": 0.95},
}
#: Every name :meth:`LightGlue.from_pretrained` takes
WEIGHT_NAMES = (*CVG_FEATURES, "xfeat-lighterglue")
# keys of released files that no version of the network reads: DISK's file holds the
# ``log_assignment.{i}.r`` scalars (all 1.0) of a dropped temperature; cvg's loader ignores them
_UNUSED_KEYS = re.compile(r"log_assignment\.\d+\.r$")


def weights_license(name: str) -> str:
    """The license of the matcher weights ``name`` (see :data:`WEIGHT_NAMES`)."""
    if name == "xfeat-lighterglue":
        return "Apache-2.0 (verlab/accelerated_features)"
    return CVG_LICENSE


def release_file(name: str) -> str:
    """The cache file name of the release weights ``name`` (see :data:`WEIGHT_NAMES`)."""
    return f"{name}_lightglue_v0-1_arxiv.pth"


def bundled_matcher(name: str):
    """Path (a Traversable) of bundled matcher weights ``name`` (see :data:`BUNDLED`)."""
    return resources.files("keypoints") / "weights" / BUNDLED[name]


def release_cached(name: str) -> bool:
    """True when the weights ``name`` are usable offline: bundled, or in keypoints' cache."""
    from .weights import cache_dir

    if name in BUNDLED:
        return True
    return (cache_dir() / release_file(name)).is_file()


def matcher_part(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The matcher's entries of a checkpoint that also holds an extractor.

    verlab's ``xfeat-lighterglue.pt`` keeps them under ``matcher.`` (the extractor under
    ``extractor.``); other checkpoints are returned as they are.
    """
    if "matcher.posenc.Wr.weight" not in state:
        return state
    return {k[len("matcher.") :]: v for k, v in state.items() if k.startswith("matcher.")}


def is_cvg_state_dict(state: dict[str, torch.Tensor]) -> bool:
    """True for cvg/LightGlue's (and kornia's) key layout (``posenc.Wr``, ``Wqkv``, ...)."""
    return "posenc.Wr.weight" in state


def convert_cvg_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """cvg/LightGlue's parameter names and layout -> ours (transformers').

    Differences handled: the self-attention's fused ``Wqkv`` is laid out (heads, head_dim, 3)
    along its output, so q, k and v are interleaved per head (cvg's ``SelfBlock``); the
    cross-attention's single ``to_qk`` serves as both query and key projection (cvg's
    ``CrossBlock``); the old ``self_attn.{i}``/``cross_attn.{i}`` prefixes (cvg renames them
    too); ``token.0`` of the token-confidence ``Sequential``; the derived
    ``confidence_thresholds`` buffer and the known-unused ``log_assignment.{i}.r`` scalars of
    DISK's release are dropped (any other unknown key raises :class:`WeightsError`).
    """
    if not is_cvg_state_dict(state):
        raise WeightsError("not a cvg/LightGlue state dict (no posenc.Wr.weight)")
    dim = state["posenc.Wr.weight"].shape[0] * 2  # head_dim
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", key)
        if key == "confidence_thresholds" or _UNUSED_KEYS.match(key):
            continue
        if key == "posenc.Wr.weight":
            out["positional_encoder.projector.weight"] = value
            continue
        if key.startswith("input_proj."):
            out["input_projection." + key.split(".", 1)[1]] = value
            continue
        if m := re.match(r"log_assignment\.(\d+)\.(final_proj|matchability)\.(\w+)$", key):
            name = "final_projection" if m[2] == "final_proj" else "matchability"
            out[f"match_assignment_layers.{m[1]}.{name}.{m[3]}"] = value
            continue
        if m := re.match(r"token_confidence\.(\d+)\.token\.0\.(\w+)$", key):
            out[f"token_confidence.{m[1]}.token.{m[2]}"] = value
            continue
        m = re.match(r"transformers\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m is None:
            raise WeightsError(f"unexpected key '{key}' in a cvg/LightGlue state dict")
        prefix, module, kind = f"transformer_layers.{m[1]}.", m[2], m[3]
        if module == "self_attn.Wqkv":
            heads = value.shape[0] // 3 // dim
            parts = value.reshape(heads, dim, 3, *value.shape[1:]).unbind(2)
            for name, part in zip(("q_proj", "k_proj", "v_proj"), parts):
                out[f"{prefix}self_attention.{name}.{kind}"] = part.reshape(
                    heads * dim, *value.shape[1:]
                )
        elif module == "cross_attn.to_qk":
            out[f"{prefix}cross_attention.q_proj.{kind}"] = value
            out[f"{prefix}cross_attention.k_proj.{kind}"] = value.clone()
        elif module in _CVG_LAYER:
            out[f"{prefix}{_CVG_LAYER[module]}.{kind}"] = value
        else:
            raise WeightsError(f"unexpected key '{key}' in a cvg/LightGlue state dict")
    return out


def config_from_state_dict(state: dict[str, torch.Tensor], **overrides) -> LightGlueMatcherConfig:
    """The architecture of a state dict in our (transformers') names.

    Descriptor and input sizes, layer and head counts and scale/orientation inputs come from
    the weights; ``overrides`` set the options.
    """
    try:
        dim = state["match_assignment_layers.0.final_projection.weight"].shape[0]
        projector = state["positional_encoder.projector.weight"]
    except KeyError as exc:
        raise WeightsError(f"not a LightGlue state dict: no {exc.args[0]}") from None
    projection = state.get("input_projection.weight")
    layers = {int(k.split(".")[1]) for k in state if k.startswith("match_assignment_layers.")}
    return LightGlueMatcherConfig(
        input_dim=projection.shape[1] if projection is not None else dim,
        descriptor_dim=dim,
        num_hidden_layers=len(layers),
        num_attention_heads=dim // (projector.shape[0] * 2),
        add_scale_ori=projector.shape[1] == 4,
    ).replace(**overrides)


class LightGlue(DeviceMixin, LightGlueMatcher):
    """LightGlue for the features of any detector (see :func:`keypoints.match`).

    The network and ``forward`` are :class:`LightGlueMatcher`'s. ``features`` names the release
    weights it was loaded from (``"superpoint"``, ``"aliked"``, ``"sift"``, ...), else None.
    """

    features: str | None = None

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike = "superpoint", **options) -> LightGlue:
        """Load LightGlue weights.

        Args:
            source: a name of :data:`WEIGHT_NAMES`: bundled with the package (:data:`BUNDLED`:
                ``"aliked"``, ``"xfeat-lighterglue"``; no network), or one of cvg's releases
                (:data:`CVG_FEATURES`: downloaded once from :data:`CVG_URL` into keypoints'
                cache, offline afterwards); or a checkpoint file: cvg's ``*_lightglue.pth``,
                verlab's ``xfeat-lighterglue.pt``, or a state dict in our names (``.pth`` read
                with ``weights_only=True``, or ``.safetensors``). transformers' Hub checkpoints
                (which hold a SuperPoint too) load with
                :meth:`keypoints.LightGlueForKeypointMatching.from_pretrained`.
            **options: ``depth_confidence``, ``width_confidence``, ``filter_threshold``
                (default: those the weights were published with, see :data:`RELEASE_OPTIONS`).

        Returns:
            The model in eval mode (fp32 whatever the storage); its architecture (descriptor
            size, layers, heads, scale/orientation inputs) follows from the weights.
        """
        from .weights import load_state_dict

        text = os.fspath(source)
        if text in BUNDLED:
            with resources.as_file(bundled_matcher(text)) as path:
                state = load_state_dict(path)
        else:
            state = load_state_dict(_release_path(text))
        name = text if text in WEIGHT_NAMES else None
        if name is None and "extractor.model.net.skip1.1.weight" in state:
            name = "xfeat-lighterglue"  # verlab's file, passed by path
        state = matcher_part(state)
        if is_cvg_state_dict(state):
            state = convert_cvg_state_dict(state)
        elif any(k.startswith("keypoint_detector.") for k in state):
            raise WeightsError(
                f"'{text}' holds transformers' LightGlueForKeypointMatching (with its "
                "SuperPoint): load it with keypoints.LightGlueForKeypointMatching.from_pretrained"
                " and pass that model as the matcher"
            )
        options = {**RELEASE_OPTIONS.get(name or "", {}), **options}
        model = cls(config_from_state_dict(state, **options))
        load_checked(model, state, strict=True)
        model.features = name
        return model.eval()


def _release_path(text: str):
    """The file of release weights ``text`` (downloaded once), or ``text`` as a path."""
    from .weights import download_url

    if text in CVG_FEATURES:
        hint = f"pass the path of {text}_lightglue.pth"
        return download_url(CVG_URL.format(text), release_file(text), hint)
    if os.path.isfile(text):
        return text
    raise WeightsNotFoundError(
        f"LightGlue weights '{text}' not found: neither a weights name "
        f"({', '.join(WEIGHT_NAMES)}) nor a checkpoint file. A transformers checkpoint "
        "(Hub id or folder) loads with keypoints.LightGlueForKeypointMatching"
    )
