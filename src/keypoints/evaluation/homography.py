"""``evaluate_homography``: detectors compared on a homography dataset, with a report."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._version import __version__
from ..defaults import (
    DEFAULT_DEVICE,
    DEFAULT_ESTIMATOR,
    DEFAULT_MATCHER,
    DEFAULT_PRECISION,
    DEFAULT_RANSAC_THRESHOLD,
    DEFAULT_ROTATION,
    EVAL_MAX_KEYPOINTS,
    EVAL_MODELS,
)
from ..detection import detect
from ..estimators import check_options
from ..image import to_array
from ..io import atomic_write
from ..matching import check_method, lightglue_weights_for, load_matcher, match, verify
from ..models.registry import detector_info
from ..presets import Preset, custom, load_preset
from ..rotation import check_rotation, search_rotation, searches
from .datasets import load_dataset
from .metrics import (
    corner_error,
    homography_accuracy,
    homography_auc,
    matching_accuracy,
    repeatability,
)

__all__ = ["evaluate_homography", "pipelines_for", "plot_mma", "MMA_THRESHOLDS", "H_THRESHOLDS"]

MMA_THRESHOLDS = tuple(range(1, 11))
H_THRESHOLDS = (1, 3, 5, 10)


def _options(model: str, max_keypoints: int, threshold: float | None) -> dict:
    """The comparison protocol's detector options for ``model``.

    The ``max_keypoints`` best keypoints (top-k: threshold 0 for learned models; OpenCV detectors
    keep their own response threshold) unless a threshold is given.
    """
    options: dict = {"max_keypoints": max_keypoints}
    info = detector_info(model)
    if threshold is not None:
        options["threshold"] = threshold
    elif info is None or info.kind == "learned":
        options["threshold"] = 0.0
    return options


def pipelines_for(
    models: Sequence[str] = (),
    presets: Sequence[str | Preset] = (),
    *,
    max_keypoints: int = EVAL_MAX_KEYPOINTS,
    threshold: float | None = None,
    resize: int | Sequence[int] | None = None,
    matcher: str = DEFAULT_MATCHER,
) -> list[Preset]:
    """What :func:`evaluate_homography` compares.

    Each model with the protocol's options (``max_keypoints`` best, ``resize``, ``matcher``),
    then each preset as it is defined.
    """
    check_method(matcher)
    adhoc = [custom(m, _options(m, max_keypoints, threshold), resize, matcher) for m in models]
    return [*adhoc, *(load_preset(p) for p in presets)]


#: How the settings line names the matchers and estimators.
MATCHER_NAMES = {
    "auto": "auto (LightGlue where weights for the detector are available offline, else mutual "
    "nearest neighbour; see the matcher column)",
    "lightglue": "LightGlue",
    "mnn": "mutual nearest neighbour",
}
ESTIMATOR_NAMES = {"poselib": "PoseLib LO-RANSAC", "opencv": "OpenCV USAC MAGSAC++"}


def run_settings(
    dataset,
    sequences,
    pipelines: Sequence[str | Preset],
    *,
    max_keypoints: int = EVAL_MAX_KEYPOINTS,
    threshold: float | None = None,
    resize=None,
    matcher: str = DEFAULT_MATCHER,
    matcher_weights=None,
    estimator: str = DEFAULT_ESTIMATOR,
    ransac_threshold: float = DEFAULT_RANSAC_THRESHOLD,
    rotation: str = DEFAULT_ROTATION,
    precision: str = DEFAULT_PRECISION,
) -> dict:
    """The settings of an evaluation run, as recorded in ``metrics.json`` (JSON values only).

    ``sequences`` are the dataset's (see :func:`load_dataset`); ``pipelines`` model names and
    presets. See :func:`settings_text` for the line ``summary.md`` and the CLI print.
    """
    weights = matcher_weights
    if weights is not None and not isinstance(weights, str):
        weights = getattr(weights, "name", None) or type(weights).__name__
    return {
        "dataset": str(dataset),
        "sequences": len(sequences),
        "pairs": sum(len(s.pairs) for s in sequences),
        "models": [p for p in pipelines if isinstance(p, str)],
        "presets": [p.name for p in pipelines if isinstance(p, Preset)],
        "max_keypoints": max_keypoints,
        "threshold": threshold,
        "resize": resize if resize is None or isinstance(resize, int) else list(resize),
        "matcher": matcher,
        "matcher_weights": weights,
        "estimator": estimator,
        "ransac_threshold": ransac_threshold,
        "rotation": rotation,
        "precision": precision,
        "keypoints_version": __version__,
    }


def settings_text(settings: dict) -> str:
    """One line saying how a run was made (from :func:`run_settings`), for people."""
    s = settings
    resize = s.get("resize")
    threshold = s.get("threshold")
    weights = s.get("matcher_weights")
    return (
        f"dataset={s['dataset']} ({s.get('sequences', '?')} sequences, {s.get('pairs', '?')} "
        f"pairs), models={','.join(s.get('models', [])) or '-'}, "
        f"presets={','.join(s.get('presets', [])) or '-'}, "
        f"max_keypoints={s.get('max_keypoints')}, "
        f"threshold={'top-k (0) for learned models' if threshold is None else threshold}, "
        f"resize={'native' if resize is None else resize}, "
        f"matcher={MATCHER_NAMES.get(s.get('matcher', ''), s.get('matcher'))}"
        f"{f' ({weights})' if weights else ''}, "
        f"estimator={ESTIMATOR_NAMES.get(s['estimator'], s['estimator'])} "
        f"{s['ransac_threshold']} px, rotation={s['rotation']}, precision={s['precision']}, "
        f"keypoints {s.get('keypoints_version', '?')}"
    )


def _aggregate(records: list[dict]) -> dict:
    errors = [r["corner_error"] for r in records]
    mma = np.mean([r["mma"] for r in records], axis=0) if records else np.zeros(10)
    return {
        "pairs": len(records),
        "mma": {str(t): float(v) for t, v in zip(MMA_THRESHOLDS, mma)},
        "repeatability": float(np.mean([r["repeatability"] for r in records])) if records else 0.0,
        "homography_accuracy": homography_accuracy(errors, H_THRESHOLDS),
        "homography_auc": homography_auc(errors, H_THRESHOLDS),
        "matches": float(np.mean([r["matches"] for r in records])) if records else 0.0,
    }


def evaluate_homography(
    dataset: str | Path,
    pipelines: Sequence[str | Preset] = EVAL_MODELS,
    *,
    ransac_threshold: float = DEFAULT_RANSAC_THRESHOLD,
    estimator: str = DEFAULT_ESTIMATOR,
    rotation: str = DEFAULT_ROTATION,
    precision: str = DEFAULT_PRECISION,
    device: str | None = DEFAULT_DEVICE,
    matcher_weights=None,
    output: str | Path | None = None,
    progress: bool = False,
    **protocol,
) -> dict:
    """Evaluate pipelines on every (image 1, image k) pair of a homography dataset.

    Per pair: repeatability at 3 px, MMA at 1..10 px of the pipeline's matches, and the corner
    error of the homography fitted by ``estimator`` (``ransac_threshold`` px); see
    :mod:`keypoints.evaluation.metrics` for the definitions. Averaged over pairs, overall, per
    subset (HPatches: illumination / viewpoint) and per sequence.

    Every detector and matcher is loaded before any image is read, so a missing weight fails
    at once; with ``output``, the report is rewritten after each pipeline, so finished results
    survive a later failure.

    Args:
        dataset: an HPatches or Oxford affine folder (see :func:`load_dataset`).
        pipelines: model names, run with the comparison protocol (``protocol``:
            ``max_keypoints`` (2048) best keypoints, ``threshold``, ``resize`` (native),
            ``matcher`` (``"auto"``, ``"mnn"`` or ``"lightglue"``); see :func:`pipelines_for`),
            and :class:`~keypoints.presets.Preset` objects, run as they are defined.
        ransac_threshold: the estimator's inlier threshold in pixels.
        estimator: ``"poselib"`` or ``"opencv"`` (see :func:`keypoints.verify`).
        rotation: ``"none"`` or ``"auto"`` (the second image also tried at 90, 180 and 270
            degrees; see :mod:`keypoints.rotation`); detection time then counts every turn.
        precision: the detectors' (and LightGlue's) precision.
        device: where the detectors and LightGlue run (default ``"auto"``: CUDA when
            available; None: the CPU).
        matcher_weights: LightGlue weights for every pipeline that uses LightGlue (anything
            :func:`keypoints.matching.load_matcher` takes); default: each detector's own.
        output: a folder for ``metrics.json``, ``summary.md`` and ``mma.png`` (each written
            whole or not at all).
        progress: show a progress bar.
        **protocol: see ``pipelines``.

    Returns:
        ``{name: {"mma": {"1": ..}, "repeatability", "homography_accuracy": {"1", "3", "5",
        "10"}, "homography_auc": {...}, "keypoints", "matches", "ms_per_image", "pairs",
        "matcher" (the method used), "pipeline": {...}, "settings": {...}, "subsets": {name:
        {...}}, "sequences": {name: {...}}}}``.
    """
    check_rotation(rotation)
    models = [p for p in pipelines if isinstance(p, str)]
    chosen = pipelines_for(models, [p for p in pipelines if isinstance(p, Preset)], **protocol)
    sequences = load_dataset(dataset)
    # everything is loaded (and checked) before the first image is read
    loaded = [
        (p, p.load_detector(precision=precision, device=device),
         _load_matcher(p, matcher_weights, precision, device))
        for p in chosen
    ]  # fmt: skip
    check_options("homography", estimator, ransac_threshold)
    settings = run_settings(
        dataset, sequences, pipelines, matcher_weights=matcher_weights, estimator=estimator,
        ransac_threshold=ransac_threshold, rotation=rotation, precision=precision, **protocol,
    )  # fmt: skip
    results = {}
    for pipeline, net, matcher in loaded:
        summary = _evaluate(pipeline, net, matcher, sequences, settings, progress)
        summary["settings"] = settings
        results[pipeline.name] = summary
        if output is not None:
            write_report(results, Path(output))
    return results


def _load_matcher(pipeline: Preset, weights, precision: str, device=None):
    """The LightGlue a pipeline uses (loaded now, so that missing weights fail early), or None.

    None for nearest neighbour, including what ``"auto"`` falls back to.
    """
    if pipeline.matcher == "mnn":
        return None
    if weights is None:
        if pipeline.matcher == "auto" and pipeline.matcher_weights is None:
            return None  # no weights for this detector offline: nearest neighbour
        weights = lightglue_weights_for(pipeline.detector)  # or a clear message
    return load_matcher(weights, device, precision=precision, **pipeline.matcher_options)


def _evaluate(pipeline: Preset, net, matcher, sequences, settings: dict, progress: bool) -> dict:
    """One pipeline over every pair of ``sequences``."""
    method = "mnn" if matcher is None else "lightglue"
    options = {"matcher": matcher} if matcher is not None else dict(pipeline.matcher_options)
    records, counts, times = [], [], []
    search = searches(settings["rotation"], net.name)
    bar = _bar(sum(len(s.pairs) for s in sequences), f"eval {pipeline.name}", progress)

    def run(image):
        start = time.perf_counter()
        feats = detect(image, net, resize=pipeline.resize)[0]
        times.append((time.perf_counter() - start) * 1000)
        return feats

    def pair_match(f0, f1):
        return match(f0, f1, method, **options)

    def fit(f0, f1, m):
        return verify(f0, f1, m, "homography", settings["ransac_threshold"],
                      estimator=settings["estimator"])  # fmt: skip

    for seq in sequences:
        f0 = run(seq.reference)
        counts.append(len(f0))
        k0 = f0.keypoints.numpy().astype(np.float64)
        for pair in seq.pairs:
            turns = 0
            if search:  # the detection time of every turn counts
                found = search_rotation(f0, to_array(pair.path1), run, pair_match, fit)
                f1, m, verification, turns = (found.features1, found.matches,
                                              found.verification, found.turns)  # fmt: skip
            else:
                f1 = run(pair.path1)
                m = pair_match(f0, f1)
                verification = fit(f0, f1, m)
            counts.append(len(f1))
            k1 = f1.keypoints.numpy().astype(np.float64)
            H = pair.homography
            records.append(
                {
                    "subset": pair.subset,
                    "sequence": seq.name,
                    "mma": matching_accuracy(k0, k1, m.indices.numpy(), H, MMA_THRESHOLDS),
                    "repeatability": repeatability(k0, k1, H, f0.image_size, f1.image_size),
                    "corner_error": corner_error(verification.matrix, H, f0.image_size),
                    "matches": len(m),
                    "rotation": 90 * turns,
                }
            )
            bar.update(1)
    bar.close()
    summary = _aggregate(records)
    summary["keypoints"] = float(np.mean(counts)) if counts else 0.0
    summary["ms_per_image"] = float(np.sum(times)) / len(counts) if counts else 0.0
    summary["matcher"] = method
    for key, field in (("subsets", "subset"), ("sequences", "sequence")):
        groups = defaultdict(list)
        for r in records:
            groups[r[field]].append(r)
        summary[key] = {name: _aggregate(rs) for name, rs in sorted(groups.items())}
    summary["pipeline"] = pipeline.as_dict()
    return summary


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="pair", disable=not enabled, leave=False)


def summary_table(results: dict) -> str:
    """A markdown table: one row per model and subset ("all" first)."""
    header = ["model", "matcher", "subset", "pairs", "MMA@1", "MMA@3", "MMA@5", "MMA@10", "rep@3",
              "H@1", "H@3", "H@5", "H@10", "AUC@5", "keypoints", "matches", "ms/image"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, res in results.items():
        subsets = list(res["subsets"].items())
        if len(subsets) == 1:  # one subset holds every pair: its row would repeat "all"
            subsets = []
        for subset, r in [("all", res), *subsets]:
            cells = [model, res.get("matcher", ""), subset, str(r["pairs"])]
            cells += [f"{r['mma'][t]:.3f}" for t in ("1", "3", "5", "10")]
            cells.append(f"{r['repeatability']:.3f}")
            cells += [f"{r['homography_accuracy'][t]:.3f}" for t in ("1", "3", "5", "10")]
            cells.append(f"{r['homography_auc']['5']:.3f}")
            if subset == "all":
                cells += [
                    f"{res['keypoints']:.0f}",
                    f"{r['matches']:.0f}",
                    f"{res['ms_per_image']:.0f}",
                ]
            else:
                cells += ["", f"{r['matches']:.0f}", ""]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: dict, output: Path) -> None:
    """``metrics.json``, ``summary.md`` and ``mma.png`` (MMA curves, as D2-Net's figure)."""
    output.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(output / "metrics.json", lambda p: Path(p).write_text(text))
    table = summary_table(results)
    settings = next(iter(results.values()), {}).get("settings")
    if settings:  # how the numbers were made, above them
        table = f"settings: {settings_text(settings)}\n\n{table}"
    atomic_write(output / "summary.md", lambda p: Path(p).write_text(table))
    fig = plot_mma(results)
    atomic_write(output / "mma.png", lambda p: fig.savefig(p, format="png", dpi=100))


def plot_mma(results: dict):
    """MMA curves (mean matching accuracy against the threshold in pixels, as D2-Net's figure).

    Args:
        results: model -> the summary :func:`evaluate_homography` returns (its ``"mma"`` and
            its ``"subsets"``, each subset with its own ``"mma"`` and ``"pairs"``).

    Returns:
        A matplotlib Figure (Agg) with one panel for all pairs and one per subset, or a single
        panel when there is one subset (it holds every pair: the panels would be identical);
        one curve per model, thresholds 1 to 10 px on x, MMA in [0, 1] on y.
    """
    from matplotlib.figure import Figure

    names = sorted({s for r in results.values() for s in r["subsets"]})
    panels = ["all", *names] if len(names) > 1 else names or ["all"]
    fig = Figure(figsize=(4.5 * len(panels), 4), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, subset in zip(axes, panels):
        pairs = 0
        for model, res in results.items():
            r = res if subset == "all" or len(panels) == 1 else res["subsets"].get(subset)
            if r:
                pairs = max(pairs, int(r.get("pairs", 0)))
                ax.plot(MMA_THRESHOLDS, [r["mma"][str(t)] for t in MMA_THRESHOLDS], marker="o",
                        markersize=4, label=model)  # fmt: skip
        title = subset if not pairs else f"{subset} ({pairs} pairs)"
        ax.set(title=title, xlabel="threshold [px]", ylim=(0, 1), xlim=(1, 10))
        ax.set_xticks(MMA_THRESHOLDS)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MMA")
    axes[0].legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return fig
