"""``sfm``: a folder of photos to a COLMAP model in one call, each stage resumable.

The stages, as hloc runs them by hand: extract (features.h5) -> pairs (pairs.txt) -> match
(matches.h5) -> COLMAP database (database.db) -> pycolmap's incremental mapping (sparse/N/).
Every stage skips what is already current: extraction and matching skip the images and pairs
already in their files (and redo those whose inputs changed, by the provenance each file
records); the database and the mapping are rebuilt only when the digest of their inputs (the
features and matches of the chosen pairs) differs from the one recorded in ``sfm.json``. A run
killed at any point leaves every finished stage intact, and a rerun goes on from there.

Needs pycolmap (``pip install "keypoints[colmap]"``); ``engine="ray"`` needs Ray.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..defaults import DEFAULT_DEVICE, DEFAULT_ENGINE, DEFAULT_WORKERS
from ..errors import ConfigError, KeypointsError, closest
from ..io import atomic_write
from ..io.colmap import import_colmap
from ..io.hloc import image_identity, list_names, open_h5, pair_name, text_attribute
from ..io.locks import exclusive
from ..presets import Preset, load_preset
from .extract import extract_report
from .images import list_images
from .match_pairs import match_pairs
from .pairs import exhaustive_pairs, pairs_from, sequential_pairs, write_pairs

__all__ = [
    "sfm",
    "SfmReport",
    "StageReport",
    "parse_pairs",
    "PAIR_MODES",
    "DEFAULT_SFM_PRESET",
    "plot_model",
]

#: The preset ``sfm`` runs unless told otherwise: the default detector and its LightGlue.
DEFAULT_SFM_PRESET = "aliked-lightglue"
#: How pairs are chosen: ``auto`` is exhaustive up to :data:`AUTO_EXHAUSTIVE_IMAGES` images
#: (n(n-1)/2 pairs), retrieval of the :data:`DEFAULT_RETRIEVAL_K` most similar beyond.
PAIR_MODES = ("auto", "exhaustive", "sequential", "retrieval")
AUTO_EXHAUSTIVE_IMAGES = 100
DEFAULT_RETRIEVAL_K = 20
DEFAULT_WINDOW = 10
#: Registered images a model needs to be kept (COLMAP's default of 10 would drop the models of
#: small collections, such as a six-view sequence among other photos).
MIN_MODEL_SIZE = 3
#: The stage record beside the outputs.
STATE_NAME = "sfm.json"
STAGES = ("extract", "pairs", "match", "database", "mapping")


def parse_pairs(spec: str) -> tuple[str, int | None]:
    """``"exhaustive"``, ``"auto"``, ``"sequential:K"`` or ``"retrieval:K"`` -> (mode, K).

    ``K`` may also follow a space or ``=`` (``"retrieval 20"``); without it, sequential pairs
    each image with the next :data:`DEFAULT_WINDOW` and retrieval with its
    :data:`DEFAULT_RETRIEVAL_K` most similar. Anything else raises :class:`ConfigError`.
    """
    parts = [p for p in re.split(r"[\s:=]+", str(spec).strip().lower()) if p]
    mode = parts[0] if parts else ""
    if mode not in PAIR_MODES or len(parts) > 2:
        raise ConfigError(
            f"pairs '{spec}' is not understood{closest(mode, PAIR_MODES)}: use auto, exhaustive, "
            "sequential:K or retrieval:K"
        )
    if len(parts) == 1:
        default = {"sequential": DEFAULT_WINDOW, "retrieval": DEFAULT_RETRIEVAL_K}
        return mode, default.get(mode)
    if mode in ("auto", "exhaustive") or not parts[1].isdigit() or int(parts[1]) < 1:
        raise ConfigError(f"pairs '{spec}': only sequential and retrieval take a positive K")
    return mode, int(parts[1])


@dataclass
class StageReport:
    """One stage of :func:`sfm`: its wall time, whether it was skipped as current, what it did."""

    seconds: float = 0.0
    skipped: bool = False
    detail: str = ""


@dataclass
class SfmReport:
    """What :func:`sfm` built.

    Attributes:
        output: the output folder (features.h5, pairs.txt, matches.h5, database.db, sparse/N/,
            model.png, registration.txt, sfm.json).
        reconstructions: pycolmap's models, ``{index: pycolmap.Reconstruction}`` (as
            ``pycolmap.incremental_mapping`` returns them; written under sparse/index/).
        images: images with features (bad images excluded, see ``errors``).
        registered: images registered in some model.
        unregistered: names of the images no model registered.
        pairs: the number of pairs matched.
        points3d: 3D points over all models.
        mean_track_length: observations per 3D point, over all models.
        mean_reprojection_error: pixels, over all models (weighted by their observations).
        stages: per stage (``extract``, ``pairs``, ``match``, ``database``, ``mapping``) a
            :class:`StageReport`.
        errors: ``(name, reason)`` of the images that could not be read.
    """

    output: Path
    reconstructions: dict[int, Any] = field(default_factory=dict)
    images: int = 0
    registered: int = 0
    unregistered: list[str] = field(default_factory=list)
    pairs: int = 0
    points3d: int = 0
    mean_track_length: float = 0.0
    mean_reprojection_error: float = 0.0
    stages: dict[str, StageReport] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> list[str]:
        """The run in a few lines, for people."""
        lines = [
            f"registered {self.registered} / {self.images} images in "
            f"{len(self.reconstructions)} model(s): {self.points3d} 3D points, mean track "
            f"length {self.mean_track_length:.2f}, mean reprojection error "
            f"{self.mean_reprojection_error:.3f} px",
        ]
        for index, rec in sorted(self.reconstructions.items()):
            lines.append(
                f"  model {index}: {rec.num_reg_images()} images, {rec.num_points3D()} points "
                f"(sparse/{index}/)"
            )
        if self.unregistered:
            shown = ", ".join(self.unregistered[:8]) + (
                " ..." if len(self.unregistered) > 8 else ""
            )
            lines.append(f"not registered ({len(self.unregistered)}): {shown}")
        if self.errors:
            names = ", ".join(name for name, _ in self.errors[:8])
            more = " ..." if len(self.errors) > 8 else ""
            lines.append(f"bad images ({len(self.errors)}, see registration.txt): {names}{more}")
        times = ", ".join(
            f"{name} {stage.seconds:.1f} s{' (current)' if stage.skipped else ''}"
            for name, stage in self.stages.items()
        )
        lines.append(f"time: {times}")
        return lines


def sfm(
    images,
    output: str | os.PathLike,
    *,
    preset: str | Preset = DEFAULT_SFM_PRESET,
    pairs: str = "auto",
    engine: str = DEFAULT_ENGINE,
    address: str | None = None,
    workers: int = DEFAULT_WORKERS,
    device: str | None = DEFAULT_DEVICE,
    single_camera: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SfmReport:
    """Build COLMAP models of ``images``: extract, pair, match, import, map.

    Args:
        images: a folder of photos (sub-folders included), a text file of paths, or a list of
            paths (see :func:`~keypoints.pipeline.images.list_images`).
        output: the output folder (made if absent): ``features.h5``, ``pairs.txt``,
            ``matches.h5``, ``database.db``, ``sparse/N/`` (COLMAP's binary model N),
            ``model.png`` (a top view of the points and cameras), ``registration.txt`` (a row
            per image) and ``sfm.json`` (what each stage was built from).
        preset: the detector, its options and resize, and the matcher (see
            :func:`keypoints.list_presets`; default ALIKED-n16rot + LightGlue, bundled).
        pairs: ``"auto"`` (exhaustive up to 100 images, else retrieval of the 20 most similar),
            ``"exhaustive"``, ``"sequential:K"`` (ordered captures) or ``"retrieval:K"``
            (see :func:`parse_pairs`).
        engine: ``"local"`` or ``"ray"`` (extraction and matching on Ray; ``address`` names a
            cluster, else ``RAY_ADDRESS`` or a local instance).
        address: the Ray cluster (``engine="ray"`` only).
        workers: decoding threads (local) or model actors (Ray).
        device: where the detector and LightGlue run (``"auto"``: CUDA when available).
        single_camera: one camera shared by all images (else one per image, from EXIF when
            the images carry it, as COLMAP's importer does).
        overwrite: rebuild every stage from scratch.
        progress: show progress bars.
        log: called with one line per stage (the CLI prints them); None for silence.

    Returns:
        An :class:`SfmReport`; its ``reconstructions`` are ``pycolmap.Reconstruction`` objects.
        A collection of unrelated photos gives several models, or leaves images unregistered
        (listed in the report); only a run that registers no image at all raises
        :class:`~keypoints.errors.KeypointsError`.
    """
    pycolmap = _pycolmap()
    chosen = load_preset(preset)
    mode, k = parse_pairs(pairs)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; sfm writes a folder")
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(out, log or (lambda line: None), overwrite, progress, device)
    root, _ = list_images(images)  # the image root COLMAP reads (names are relative to it)

    with exclusive(out / STATE_NAME):  # one sfm run per output folder
        names = run.extract(images, chosen, workers, engine, address)
        if len(names) < 2:
            raise KeypointsError(f"sfm needs at least two readable images; {len(names)} in {root}")
        if mode == "auto":
            auto = len(names) <= AUTO_EXHAUSTIVE_IMAGES
            mode, k = ("exhaustive", None) if auto else ("retrieval", DEFAULT_RETRIEVAL_K)
        chosen_pairs = run.pairs(names, mode, k)
        run.match(chosen_pairs, chosen, engine, address, workers)
        digest = run.database(chosen_pairs, root, single_camera)
        reconstructions = run.mapping(pycolmap, root, digest)

    report = run.report
    _summarize(report, reconstructions, names)
    _write_registration(out / "registration.txt", report, names)
    if reconstructions:
        from ..viz import save_figure

        save_figure(plot_model(reconstructions), out / "model.png")
    if not report.registered:
        raise KeypointsError(
            f"no model could be built from {len(names)} images ({len(chosen_pairs)} pairs): the "
            f"images may not overlap; see {out / 'registration.txt'}"
        )
    return report


class _Run:
    """The stages of one :func:`sfm` run over the output folder ``out``, step by step."""

    def __init__(self, out: Path, say, overwrite: bool, progress: bool, device) -> None:
        self.out, self.say = out, say
        self.overwrite, self.progress, self.device = overwrite, progress, device
        self.files = {n: out / n for n in ("features.h5", "pairs.txt", "matches.h5", "database.db")}
        self.report = SfmReport(out)
        self.state = {} if overwrite else _read_state(out)

    def _stage(self, name: str, start: float, skipped: bool, detail: str) -> None:
        self.report.stages[name] = StageReport(time.perf_counter() - start, skipped, detail)

    def extract(self, images, chosen: Preset, workers: int, engine: str, address) -> list[str]:
        """1. features of every image (images already in features.h5 are skipped)."""
        start = time.perf_counter()
        features = self.files["features.h5"]
        self.say(f"[1/5] extract: {chosen.detector} ({chosen.name}) -> {features}")
        done = extract_report(
            images, features, chosen.detector, resize=chosen.resize, workers=workers,
            overwrite=self.overwrite, progress=self.progress, engine=engine, address=address,
            device=self.device, **chosen.options,
        )  # fmt: skip
        self.report.errors = done.errors
        names = list_names(features)
        self.report.images = len(names)
        detail = f"{done.extracted} extracted, {done.skipped} current, {len(done.errors)} bad"
        self._stage("extract", start, done.extracted == 0 and not done.errors, detail)
        return names

    def pairs(self, names: list[str], mode: str, k: int | None) -> list[tuple[str, str]]:
        """2. the pairs, written to pairs.txt only when they change."""
        start = time.perf_counter()
        chosen = _choose_pairs(self.files["features.h5"], names, mode, k)
        path = self.files["pairs.txt"]
        text = "".join(f"{a} {b}\n" for a, b in chosen)
        same = path.is_file() and path.read_text() == text
        if not same:
            write_pairs(chosen, path)
        self.report.pairs = len(chosen)
        self._stage("pairs", start, same, f"{len(chosen)} {mode} pairs")
        self.say(f"[2/5] pairs: {len(chosen)} ({mode}{'' if k is None else f' {k}'}) -> {path}")
        return chosen

    def match(self, pairs, chosen: Preset, engine: str, address, workers: int) -> None:
        """3. matches (pairs already matched from the current features are skipped)."""
        start = time.perf_counter()
        self.say(f"[3/5] match: {chosen.matcher} -> {self.files['matches.h5']}")
        _, matched, current = match_pairs(
            self.files["features.h5"], pairs, self.files["matches.h5"], method=chosen.matcher,
            overwrite=self.overwrite, progress=self.progress, device=self.device, engine=engine,
            address=address, workers=workers, **chosen.matcher_options,
        )  # fmt: skip
        self._stage("match", start, matched == 0, f"{matched} matched, {current} current")

    def database(self, pairs, root: Path, single_camera: bool) -> str:
        """4. the COLMAP database, rebuilt when its inputs changed; returns their digest."""
        start = time.perf_counter()
        files = self.files
        digest = _inputs_digest(files["features.h5"], files["matches.h5"], pairs,
                                {"single_camera": single_camera, "root": str(root)})  # fmt: skip
        fresh = self.state.get("database") == digest and files["database.db"].is_file()
        if fresh:
            self.say(f"[4/5] database: {files['database.db']} is current")
            detail = "current"
        else:
            self.say(f"[4/5] database: importing into {files['database.db']}")
            imported = import_colmap(files["features.h5"], files["matches.h5"],
                                     files["database.db"], image_dir=root, pairs=pairs,
                                     single_camera=single_camera, overwrite=True)  # fmt: skip
            detail = f"{imported.verified_pairs} verified pairs of {imported.matched_pairs}"
            self.state["database"] = digest
            self.state.pop("mapping", None)
            _write_state(self.out, self.state)
        self._stage("database", start, fresh, detail)
        return digest

    def mapping(self, pycolmap, root: Path, digest: str) -> dict[int, Any]:
        """5. incremental mapping, rerun when the database changed."""
        start = time.perf_counter()
        sparse = self.out / "sparse"
        current = self.state.get("mapping") == digest and bool(_models_in(sparse))
        if current:
            self.say(f"[5/5] mapping: {sparse} is current")
            found = {int(p.name): pycolmap.Reconstruction(str(p)) for p in _models_in(sparse)}
        else:
            self.say(f"[5/5] mapping: pycolmap incremental mapping -> {sparse}")
            found = _map(pycolmap, self.files["database.db"], root, sparse)
            self.state["mapping"] = digest
            _write_state(self.out, self.state)
        self._stage("mapping", start, current, f"{len(found)} model(s)")
        return found


def _pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise ConfigError("sfm needs pycolmap: pip install 'keypoints[colmap]'") from None
    return pycolmap


def _choose_pairs(features: Path, names: list[str], mode: str, k: int | None):
    if mode == "exhaustive":
        return exhaustive_pairs(names)
    if mode == "sequential":
        return sequential_pairs(names, int(k or DEFAULT_WINDOW))
    return pairs_from(features, retrieval=int(k or DEFAULT_RETRIEVAL_K))


def _read_state(out: Path) -> dict:
    """``sfm.json``, or an empty record when absent or unreadable (every stage is then redone)."""
    try:
        data = json.loads((out / STATE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(out: Path, state: dict) -> None:
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    atomic_write(out / STATE_NAME, lambda tmp: Path(tmp).write_text(text))


def _inputs_digest(features: Path, matches: Path, pairs, options: dict) -> str:
    """sha256 of what the database is built from.

    The identity of every image's features (:func:`~keypoints.io.hloc.image_identity`), the
    pairs, and per pair the features it was matched from and its match count; plus
    ``options``.
    """
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    names = sorted({n for pair in pairs for n in pair})
    with open_h5(features, "features file") as source:
        for name in names:
            digest.update(f"{name}\0{image_identity(source[name])}\n".encode())  # type: ignore[arg-type]
    with open_h5(matches, "matches file") as file:
        for a, b in pairs:
            group = file.get(pair_name(a, b))
            if not isinstance(group, h5py.Group):
                digest.update(f"{a}\0{b}\0-\n".encode())
                continue
            keys = ("features0", "features1")
            stored = [text_attribute(group.attrs.get(key)) for key in keys]
            count = int(np.count_nonzero(np.asarray(group["matches0"]) >= 0))
            digest.update(f"{a}\0{b}\0{stored}\0{count}\n".encode())
    return digest.hexdigest()


def _models_in(sparse: Path) -> list[Path]:
    """The model folders ``sparse/N/`` holding a complete binary model, in order."""
    if not sparse.is_dir():
        return []
    needed = ("cameras.bin", "images.bin", "points3D.bin")
    found = [p for p in sparse.iterdir() if p.name.isdigit() and p.is_dir()]
    return sorted((p for p in found if all((p / n).is_file() for n in needed)),
                  key=lambda p: int(p.name))  # fmt: skip


def _map(pycolmap, database: Path, root: Path, sparse: Path) -> dict[int, Any]:
    """Pycolmap's incremental mapping into a temporary folder, then moved to ``sparse``.

    A kill during mapping leaves the previous models (or none), never half of the new ones.
    """
    options = pycolmap.IncrementalPipelineOptions()
    options.min_model_size = MIN_MODEL_SIZE
    if hasattr(options, "random_seed"):
        options.random_seed = 0  # the same database gives the same models
    tmp = sparse.with_name(f".{sparse.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from ..io.colmap import colmap_log_level

    with colmap_log_level(pycolmap):
        found = pycolmap.incremental_mapping(str(database), str(root), str(tmp), options=options)
    shutil.rmtree(sparse, ignore_errors=True)
    os.replace(tmp, sparse)
    reconstructions = {}
    for index, rec in sorted(found.items()):
        folder = sparse / str(index)
        folder.mkdir(exist_ok=True)
        rec.write(str(folder))  # (pycolmap writes each model as mapping ends; here surely)
        reconstructions[int(index)] = rec
    return reconstructions


def _summarize(report: SfmReport, reconstructions: dict[int, Any], names: list[str]) -> None:
    report.reconstructions = reconstructions
    registered: set[str] = set()
    observations = points = 0
    error = 0.0
    for rec in reconstructions.values():
        registered |= {rec.image(i).name for i in rec.reg_image_ids()}
        n_points = rec.num_points3D()
        n_obs = rec.compute_num_observations()
        points += n_points
        observations += n_obs
        error += rec.compute_mean_reprojection_error() * n_obs
    report.registered = len(registered)
    report.unregistered = [n for n in names if n not in registered]
    report.points3d = points
    report.mean_track_length = observations / points if points else 0.0
    report.mean_reprojection_error = error / observations if observations else 0.0


def _write_registration(path: Path, report: SfmReport, names: list[str]) -> None:
    """A row per image: name, model, 3D points it observes, keypoints (tab-separated)."""
    where: dict[str, tuple[int, int, int]] = {}
    for index, rec in report.reconstructions.items():
        for image_id in rec.reg_image_ids():
            image = rec.image(image_id)
            where[image.name] = (index, image.num_points3D, image.num_points2D())
    rows = ["image\tmodel\tpoints3D\tkeypoints"]
    for name in names:
        index, seen, keypoints = where.get(name, (-1, 0, 0))
        rows.append(f"{name}\t{index if index >= 0 else '-'}\t{seen}\t{keypoints or '-'}")
    rows += [f"{name}\tbad image: {reason}\t\t" for name, reason in report.errors]
    text = "\n".join(rows) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _top_view_axes(rec, both: np.ndarray) -> np.ndarray:
    """Two orthonormal world axes (3, 2) spanning the ground plane of a model.

    "Up" is the mean of the registered cameras' up vectors (COLMAP's camera y axis points down
    in the image, so up is minus the second row of each world-to-camera rotation): people hold
    cameras roughly upright. When the cameras disagree (|mean| < 0.5), the axis of least spread
    of the points and centres stands in. The first axis is the points' main direction on the
    ground, the second completes a right-handed frame.
    """
    downs = [rec.image(i).cam_from_world().rotation.matrix()[1] for i in rec.reg_image_ids()]
    up = -np.mean(downs, axis=0) if downs else np.zeros(3)
    centred = both - both.mean(axis=0) if len(both) else np.zeros((1, 3))
    if np.linalg.norm(up) < 0.5:
        up = np.linalg.svd(centred, full_matrices=True)[2][-1] if len(both) > 2 else np.eye(3)[2]
    up = up / np.linalg.norm(up)
    flat = centred - np.outer(centred @ up, up)  # projected onto the ground plane
    first = np.linalg.svd(flat, full_matrices=True)[2][0] if len(flat) > 1 else np.eye(3)[0]
    first = first - (first @ up) * up
    if np.linalg.norm(first) < 1e-9:
        first = np.cross(up, np.eye(3)[np.argmin(np.abs(up))])
    first = first / np.linalg.norm(first)
    return np.stack([first, np.cross(up, first)], axis=1)


def plot_model(reconstructions: dict[int, Any], max_points: int = 50_000):
    """A top view of the models: 3D points (grey) and camera centres (a colour per model).

    The view looks down the cameras' mean up direction (see :func:`_top_view_axes`), so a
    facade is a line with the cameras in front of it and a walk around a building a ring. Each
    model is drawn in its own frame, side by side when there are several.

    Args:
        reconstructions: ``{index: pycolmap.Reconstruction}``.
        max_points: draw at most this many points per model (a seeded random subset).

    Returns:
        A matplotlib Figure (Agg).
    """
    from matplotlib.figure import Figure

    models = sorted(reconstructions.items())
    fig = Figure(figsize=(5.0 * max(1, len(models)), 5.0), dpi=100)
    axes = fig.subplots(1, max(1, len(models)), squeeze=False)[0]
    rng = np.random.default_rng(0)
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    for ax, (index, rec) in zip(axes, models):
        points = np.array([p.xyz for p in rec.points3D.values()], np.float64).reshape(-1, 3)
        centres = np.array(
            [rec.image(i).projection_center() for i in rec.reg_image_ids()], np.float64
        ).reshape(-1, 3)
        if len(points) > max_points:
            points = points[rng.choice(len(points), max_points, replace=False)]
        if len(points) > 10:  # a robust extent: the farthest 2% of points are left out
            spread = np.linalg.norm(points - np.median(points, axis=0), axis=1)
            points = points[spread <= np.quantile(spread, 0.98)]
        both = np.concatenate([points, centres])
        plane = _top_view_axes(rec, both)
        mean = both.mean(axis=0) if len(both) else np.zeros(3)
        p2, c2 = (points - mean) @ plane, (centres - mean) @ plane
        ax.scatter(p2[:, 0], p2[:, 1], s=1.0, c="0.35", alpha=0.5, linewidths=0, label="points")
        colour = colours[index % len(colours)]
        ax.scatter(c2[:, 0], c2[:, 1], s=30, c=colour, marker="^", edgecolors="black",
                   linewidths=0.4, label="cameras")  # fmt: skip
        ax.set_title(f"model {index}: {rec.num_reg_images()} images, {rec.num_points3D()} points")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="upper right", fontsize=8, markerscale=1.5)
    fig.suptitle("top view (looking down the cameras' mean up direction)", fontsize=9)
    fig.tight_layout()
    return fig
