"""Retrieval pairs: each image with the images whose global descriptors are most similar.

The global descriptor of an image is VLAD (vector of locally aggregated descriptors; Jegou,
Douze, Schmid and Perez, "Aggregating local descriptors into a compact image representation",
CVPR 2010) of the local descriptors a features file (``keypoints extract``) already holds, so
nothing is downloaded and no other network runs:

1. a codebook of ``codebook_size`` visual words is learned by k-means (Lloyd's algorithm with
   k-means++ seeding, Arthur and Vassilvitskii, SODA 2007) on a seeded uniform random sample of
   the collection's own descriptors;
2. each local descriptor (L2-normalised; binary ones unpacked to +-1 first) is assigned to its
   nearest word, and the residuals ``x - c`` are summed per word: a ``codebook_size x D``
   vector;
3. the vector is intra-normalised (each word's block L2-normalised; Arandjelovic and Zisserman,
   "All about VLAD", CVPR 2013, section 3), power-normalised by the signed square root (Jegou et
   al., "Aggregating local image descriptors into compact codes", TPAMI 2012, section 2.3;
   Perronnin et al., ECCV 2010) and L2-normalised, so a dot product is a cosine similarity.

Images are read one at a time (twice: to sample descriptors for the codebook, then to encode
them), so memory holds one image's descriptors, the sample (``sample x D`` float32) and the
global descriptors (``images x codebook_size * D`` float32). Similarities are computed a block
of rows at a time, never as a full ``images x images`` matrix.

:func:`recall_at_k` measures a ranking against known scenes (``benchmarks/bench_retrieval.py``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from ..errors import ConfigError, KeypointsError
from ..io.hloc import list_names, open_h5, read_features

__all__ = [
    "Recall",
    "global_descriptors",
    "kmeans",
    "nearest_images",
    "recall_at_k",
    "retrieval_pairs",
    "top_k",
    "vlad",
]

#: similarity rows computed at once are limited to about this many float32 entries (64 MiB)
_BLOCK_ENTRIES = 1 << 24


def retrieval_pairs(
    features: str | os.PathLike,
    k: int,
    *,
    codebook_size: int = 64,
    sample: int = 100_000,
    seed: int = 0,
    progress: bool = False,
) -> list[tuple[str, str]]:
    """Each image of ``features`` paired with its ``k`` most similar images (VLAD, cosine).

    The union of these neighbourhoods, each unordered pair once as ``(a, b)`` with ``a`` before
    ``b`` in the file's (sorted) name order, the pairs sorted in that order; never an image
    with itself. ``k >= images - 1`` gives every pair (as
    :func:`~keypoints.pipeline.pairs.exhaustive_pairs`). Images without keypoints have a zero
    descriptor (similarity 0 to every image) and are still paired (a warning names them).

    Args:
        features: a features ``.h5`` written by ``keypoints extract`` (hloc's layout).
        k: the neighbours of each image (>= 1).
        codebook_size: the visual words of the VLAD codebook (fewer if the collection has fewer
            descriptors).
        sample: at most this many descriptors, drawn uniformly at random from the whole
            collection, train the codebook.
        seed: the seed of the sample and of k-means; the same seed gives the same pairs.
        progress: show progress bars.

    Returns:
        The pairs, deterministic for a given file, ``k`` and settings.
    """
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1:
        with open_h5(features, "features file") as file:
            names = list_names(file)
        if names and k >= len(names) - 1:  # every image is a neighbour: skip the descriptors
            return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    ranking = nearest_images(features, k, codebook_size=codebook_size, sample=sample,
                             seed=seed, progress=progress)  # fmt: skip
    names = list(ranking)
    index = {name: i for i, name in enumerate(names)}
    unordered = {
        (min(index[a], index[b]), max(index[a], index[b]))
        for a, neighbours in ranking.items()
        for b in neighbours
    }
    return [(names[i], names[j]) for i, j in sorted(unordered)]


def nearest_images(
    features: str | os.PathLike,
    k: int,
    *,
    codebook_size: int = 64,
    sample: int = 100_000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, list[str]]:
    """The ``k`` images most similar to each image of ``features``, most similar first.

    The arguments are those of :func:`retrieval_pairs`. Keys are in the file's sorted name
    order; ties (e.g. an image without keypoints) are broken by that order. Each list has
    ``min(k, images - 1)`` names.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"the retrieval K (neighbours per image) must be >= 1, got {k!r}")
    names, descriptors = global_descriptors(
        features, codebook_size=codebook_size, sample=sample, seed=seed, progress=progress
    )
    neighbours = top_k(descriptors, int(k))
    return {name: [names[j] for j in row] for name, row in zip(names, neighbours)}


def global_descriptors(
    features: str | os.PathLike,
    *,
    codebook_size: int = 64,
    sample: int = 100_000,
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[str], np.ndarray]:
    """The names of the images of ``features`` and their VLAD descriptors.

    Returns:
        ``(names, descriptors)``: the sorted names and float32 ``(images, words * D)``
        L2-normalised rows (zero rows for images without keypoints), where ``D`` is the local
        descriptors' dimension (bits for binary descriptors) and ``words`` is
        ``min(codebook_size, descriptors in the collection)``.
    """
    if codebook_size < 1:
        raise ConfigError(f"the codebook size must be >= 1, got {codebook_size}")
    if sample < 1:
        raise ConfigError(f"the codebook sample must be >= 1 descriptor, got {sample}")
    from tqdm import tqdm

    with open_h5(features, "features file") as file:
        names = list_names(file)
        if not names:
            raise KeypointsError(f"{features}: no image features (run `keypoints extract`)")
        counts, dim, binary = _layout(file, names)
        rng = np.random.default_rng(seed)
        total = int(counts.sum())
        if total == 0:
            empty = np.zeros((len(names), dim), np.float32)
            _warn_empty(features, names, counts)
            return names, empty
        # a uniform sample without replacement of the whole collection, drawn image by image:
        # how many from each image (multivariate hypergeometric), then which ones
        taken = rng.multivariate_hypergeometric(counts, min(sample, total), method="marginals")
        parts = []
        for name, count, n in tqdm(list(zip(names, counts, taken)), desc="codebook sample",
                                   unit="image", disable=not progress):  # fmt: skip
            if n:
                local = _local_descriptors(file, name, binary)
                parts.append(local[np.sort(rng.choice(int(count), int(n), replace=False))])
        codebook = kmeans(np.concatenate(parts), codebook_size, seed=seed)
        del parts
        out = np.zeros((len(names), codebook.size), np.float32)
        for i, name in enumerate(tqdm(names, desc="vlad", unit="image", disable=not progress)):
            if counts[i]:
                out[i] = vlad(_local_descriptors(file, name, binary), codebook)
    if (counts == 0).any():
        _warn_empty(features, names, counts)
    return names, out


def vlad(descriptors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """The VLAD vector of local ``descriptors`` ``(N, D)`` with ``codebook`` ``(K, D)``.

    Residuals summed per nearest word (Jegou et al. 2010), intra-normalised (Arandjelovic and
    Zisserman 2013), signed square root (Jegou et al. 2012), L2-normalised: float32 ``(K * D,)``,
    zero when ``N == 0``.
    """
    codebook = np.asarray(codebook, np.float32)
    words, dim = codebook.shape
    x = np.asarray(descriptors, np.float32).reshape(-1, dim)
    if len(x) == 0:
        return np.zeros(words * dim, np.float32)
    nearest, _ = _assign(x, codebook)
    sums = _sum_by(x, nearest, words)
    residuals = sums - np.bincount(nearest, minlength=words)[:, None] * codebook
    residuals = _l2_rows(residuals)  # intra-normalisation
    v = residuals.reshape(-1)
    v = np.sign(v) * np.sqrt(np.abs(v))  # signed square root (power normalisation, alpha 0.5)
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)


def kmeans(
    data: np.ndarray, k: int, *, seed: int = 0, iterations: int = 30, tolerance: float = 1e-4
) -> np.ndarray:
    """``min(k, len(data))`` centres of ``data`` ``(M, D)`` by Lloyd's k-means, float32.

    Seeded by k-means++ (Arthur and Vassilvitskii 2007); stops after ``iterations`` or when no
    centre moves more than ``tolerance`` times the data's spread. An emptied cluster takes the
    point farthest from its centre. Deterministic for a given ``seed``.
    """
    x = np.ascontiguousarray(data, np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError(f"k-means needs a non-empty (M, D) array, got shape {x.shape}")
    k = min(int(k), len(x))
    rng = np.random.default_rng(seed)
    squares = np.einsum("ij,ij->i", x, x)  # |x|^2 per row, without an (M, D) temporary
    mean = x.mean(0)
    spread = float(np.sqrt(max(squares.mean() - mean @ mean, 0))) or 1.0
    centres = _kmeans_plus_plus(x, k, rng, squares)
    for _ in range(iterations):
        nearest, distances = _assign(x, centres)
        sums = _sum_by(x, nearest, k)
        sizes = np.bincount(nearest, minlength=k)
        updated = sums / np.maximum(sizes, 1)[:, None]
        for c in np.flatnonzero(sizes == 0):  # an empty cluster: the worst-fitted point
            far = int(np.argmax(distances))
            updated[c] = x[far]
            distances[far] = -1.0
        shift = float(np.sqrt(((updated - centres) ** 2).sum(1)).max())
        centres = updated
        if shift <= tolerance * spread:
            break
    return centres


def top_k(descriptors: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(n, min(k, n - 1))`` of each row's most similar other rows (dot product).

    Most similar first, ties broken by the lower index; a row is never its own neighbour.
    Computed a block of rows at a time (about 16M similarities per block).
    """
    g = np.asarray(descriptors, np.float32)
    n = len(g)
    k = min(int(k), n - 1)
    out = np.empty((n, max(k, 0)), np.int64)
    if k <= 0:
        return out
    block = max(1, min(n, _BLOCK_ENTRIES // max(n, 1)))
    for start in range(0, n, block):
        rows = g[start : start + block] @ g.T
        for r, row in enumerate(rows):
            row[start + r] = -np.inf  # never the image itself
            kth = np.partition(row, n - k)[n - k]  # the k-th largest similarity
            candidates = np.flatnonzero(row >= kth)  # every tie at the boundary included
            order = np.lexsort((candidates, -row[candidates]))  # by similarity, then index
            out[start + r] = candidates[order[:k]]
    return out


@dataclass(frozen=True)
class Recall:
    """Retrieval quality against known scenes (see :func:`recall_at_k`).

    Attributes:
        recall: the mean, over queries, of the fraction of the query's same-scene images found
            in its retrieved list, capped by ``min(K, same-scene images)``.
        hit_rate: the fraction of queries with at least one same-scene image retrieved.
        queries: the images with at least one other image of their scene (the others are not
            counted).
    """

    recall: float
    hit_rate: float
    queries: int


def recall_at_k(
    retrieved: Mapping[str, Sequence[str]] | Iterable[tuple[str, str]],
    scenes: Mapping[str, str],
    k: int | None = None,
) -> Recall:
    """Recall@K of same-scene images.

    For each query image with at least one other image of its scene (``scenes``: name ->
    scene), the number of same-scene images among its first ``K`` retrieved, divided by
    ``min(K, same-scene images)``; averaged over the queries. ``hit_rate`` is the fraction of
    queries with at least one same-scene image in the first ``K``.

    Args:
        retrieved: a ranking (name -> retrieved names, best first, as :func:`nearest_images`
            returns), or pairs (each image's partners, in either position, are its retrieved
            images, unranked).
        scenes: the scene of every image; images absent from it are ignored.
        k: the K of recall@K; ``None``: every retrieved image (with pairs, each query's
            partners; the cap is then the number of partners).
    """
    if isinstance(retrieved, Mapping):
        ranking = {a: list(b) for a, b in retrieved.items()}
    else:
        ranking = {}
        for a, b in retrieved:
            ranking.setdefault(a, []).append(b)
            ranking.setdefault(b, []).append(a)
    members: dict[str, int] = {}
    for scene in scenes.values():
        members[scene] = members.get(scene, 0) + 1
    recalls, hits = [], []
    for query, scene in scenes.items():
        relevant = members[scene] - 1
        if relevant < 1:
            continue
        found = ranking.get(query, [])
        found = [n for n in dict.fromkeys(found) if n != query][: k if k is not None else None]
        cap = min(k if k is not None else max(len(found), 1), relevant)
        same = sum(scenes.get(n) == scene for n in found)
        recalls.append(min(same, cap) / cap)
        hits.append(same > 0)
    if not recalls:
        return Recall(float("nan"), float("nan"), 0)
    return Recall(float(np.mean(recalls)), float(np.mean(hits)), len(recalls))


def _layout(file: h5py.File, names: Sequence[str]) -> tuple[np.ndarray, int, bool]:
    """Keypoints per image, the descriptors' dimension (bits if binary), whether binary.

    Read from the datasets' shapes and types, not their data.
    """
    counts = np.zeros(len(names), np.int64)
    kinds: dict[tuple[int, bool], str] = {}
    for i, name in enumerate(names):
        item = file[name].get("descriptors")  # type: ignore[union-attr]
        if not isinstance(item, h5py.Dataset) or item.ndim != 2:
            raise KeypointsError(
                f"{file.filename}: '{name}' has no (D, N) descriptors (hloc's layout)"
            )
        binary = item.dtype == np.uint8
        kinds.setdefault((int(item.shape[0]) * (8 if binary else 1), binary), name)
        counts[i] = item.shape[1]
    if len(kinds) > 1:
        (a, first), (b, second) = list(kinds.items())[:2]
        raise ConfigError(
            f"{file.filename}: images described differently ('{first}': {_kind(*a)}, "
            f"'{second}': {_kind(*b)}); retrieval needs one detector's descriptors"
        )
    ((dim, binary),) = kinds
    return counts, dim, binary


def _kind(dim: int, binary: bool) -> str:
    return f"{dim}-bit binary" if binary else f"{dim}-d float"


def _local_descriptors(file: h5py.File, name: str, binary: bool) -> np.ndarray:
    """The L2-normalised float32 local descriptors ``(N, D)`` of image ``name``.

    Binary descriptors (ORB, uint8 ``(N, bytes)``) are unpacked to bits mapped to -1/+1, so
    their squared Euclidean distance is 4 x their Hamming distance and k-means applies.
    """
    raw = read_features(file, name).descriptors.numpy()
    if binary:
        raw = np.unpackbits(raw.astype(np.uint8), axis=1).astype(np.float32) * 2 - 1
    return _l2_rows(np.asarray(raw, np.float32))


def _l2_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)


def _assign(x: np.ndarray, centres: np.ndarray, chunk: int = 8192):
    """The nearest centre of each row of ``x`` and the squared distance to it."""
    c2 = (centres**2).sum(1)
    nearest = np.empty(len(x), np.int64)
    distances = np.empty(len(x), np.float32)
    for s in range(0, len(x), chunk):
        part = x[s : s + chunk]
        d = c2[None, :] - 2 * part @ centres.T
        best = d.argmin(1)
        nearest[s : s + chunk] = best
        distances[s : s + chunk] = np.maximum(d[np.arange(len(part)), best] + (part**2).sum(1), 0)
    return nearest, distances


def _sum_by(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The sum of the rows of ``x`` with each label ``0..k-1``: ``(k, D)`` float32.

    Rows sorted by label and summed per run (``np.add.reduceat``; faster than ``np.add.at``).
    """
    sums = np.zeros((k, x.shape[1]), np.float32)
    if len(x) == 0:
        return sums
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    sums[present] = np.add.reduceat(x[order], starts, axis=0)
    return sums


def _kmeans_plus_plus(
    x: np.ndarray, k: int, rng: np.random.Generator, squares: np.ndarray
) -> np.ndarray:
    """k-means++ seeding (Arthur and Vassilvitskii 2007).

    Each next centre is drawn with probability proportional to the squared distance to the
    nearest centre chosen so far. ``squares``: ``|x|^2`` per row.
    """
    centres = np.empty((k, x.shape[1]), np.float32)

    def distances(c: np.ndarray) -> np.ndarray:
        return np.maximum(squares - 2 * (x @ c) + c @ c, 0)

    centres[0] = x[rng.integers(len(x))]
    closest = distances(centres[0])
    for c in range(1, k):
        total = float(closest.sum(dtype=np.float64))
        if total > 0:
            pick = int(np.searchsorted(np.cumsum(closest, dtype=np.float64),
                                       rng.random() * total, side="right"))  # fmt: skip
            pick = min(pick, len(x) - 1)
        else:  # fewer distinct points than centres: duplicates
            pick = int(rng.integers(len(x)))
        centres[c] = x[pick]
        np.minimum(closest, distances(centres[c]), out=closest)
    return centres


def _warn_empty(features, names: Sequence[str], counts: np.ndarray) -> None:
    empty = [n for n, c in zip(names, counts) if c == 0]
    shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
    warnings.warn(
        f"{features}: {len(empty)} image(s) without keypoints ({shown}) have a zero global "
        "descriptor; they are paired with the first images by name",
        stacklevel=3,
    )
