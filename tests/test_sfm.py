"""keypoints sfm: photos -> COLMAP models in one call; stages resumable and skipped when current."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import DATA, require

import keypoints  # (before pycolmap: Pillow's zlib must load first, see pipeline/sfm.py)
from keypoints.pipeline.sfm import parse_pairs
from keypoints.presets import custom

pycolmap = pytest.importorskip("pycolmap", reason="pycolmap is not installed ([colmap] extra)")

OXFORD = DATA / "homography" / "oxford_affine"
#: small enough for CI: 1024 ALIKED keypoints at 640 px, the bundled LightGlue
QUICK = custom("aliked-n16", {"max_keypoints": 1024}, resize=640, matcher="lightglue")
#: quicker still for the 66 pairs of two sequences: 512 keypoints at 480 px
QUICKER = custom("aliked-n16", {"max_keypoints": 512}, resize=480, matcher="lightglue")


def copy_sequence(name: str, folder, prefix: str = ""):
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(require(OXFORD / name).glob("img*")):
        shutil.copy(path, folder / f"{prefix}{path.name}")
    return folder


def statistics(report) -> tuple:
    models = sorted(
        (rec.num_reg_images(), rec.num_points3D()) for rec in report.reconstructions.values()
    )
    return report.registered, models, round(report.mean_reprojection_error, 6)


def test_parse_pairs():
    assert parse_pairs("exhaustive") == ("exhaustive", None)
    assert parse_pairs("auto") == ("auto", None)
    assert parse_pairs("sequential:5") == parse_pairs("sequential 5") == ("sequential", 5)
    assert parse_pairs("retrieval=20") == ("retrieval", 20)
    assert parse_pairs("retrieval") == ("retrieval", 20) and parse_pairs("sequential")[1] == 10
    for bad in ("exhaustiv", "retrieval:0", "retrieval:x", "exhaustive:3", "sequential 1 2", ""):
        with pytest.raises(keypoints.ConfigError, match="pairs"):
            parse_pairs(bad)


@pytest.mark.slow
def test_sfm_registers_the_six_wall_views_and_a_rerun_is_all_current(tmp_path):
    """As tests/test_colmap.py does through five commands: all six views, sub-pixel error."""
    images = copy_sequence("wall", tmp_path / "wall")
    out = tmp_path / "out"
    lines: list[str] = []
    report = keypoints.sfm(images, out, preset=QUICK, progress=False, log=lines.append)
    assert report.images == report.registered == 6 and not report.unregistered
    assert len(report.reconstructions) == 1 and report.pairs == 15
    assert report.points3d > 500 and 2.0 < report.mean_track_length <= 6.0
    assert report.mean_reprojection_error < 1.0
    assert [line[:5] for line in lines] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    for name in ("features.h5", "pairs.txt", "matches.h5", "database.db", "model.png",
                 "registration.txt", "sfm.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert (out / "sparse" / "0" / "points3D.bin").is_file()
    rows = (out / "registration.txt").read_text().splitlines()
    assert rows[0].split("\t") == ["image", "model", "points3D", "keypoints"] and len(rows) == 7
    assert all(row.split("\t")[1] == "0" for row in rows[1:])
    # the model written under sparse/0 is the one returned
    written = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert written.num_points3D() == report.reconstructions[0].num_points3D()
    assert any(line.startswith("registered 6 / 6 images in 1 model(s)") for line in
               report.summary())  # fmt: skip

    again = keypoints.sfm(images, out, preset=QUICK, progress=False)
    assert all(stage.skipped for stage in again.stages.values()), again.stages
    assert statistics(again) == statistics(report)

    # a new photo: only its features and pairs are computed, the model is rebuilt with it
    shutil.copy(OXFORD / "graf" / "img1.ppm", images / "graf1.ppm")
    grown = keypoints.sfm(images, out, preset=QUICK, progress=False)
    assert grown.stages["extract"].detail.startswith("1 extracted, 6 current")
    assert grown.stages["match"].detail.startswith("6 matched, 15 current")
    assert not grown.stages["database"].skipped and grown.images == 7
    assert grown.registered >= 6 and "graf1.ppm" in grown.unregistered + [
        grown.reconstructions[0].image(i).name for i in grown.reconstructions[0].reg_image_ids()
    ]


@pytest.mark.slow
def test_unrelated_scenes_give_separate_models_or_unregistered_images(tmp_path):
    """Wall and graf views in one folder: never one model mixing them, never a crash."""
    images = tmp_path / "mixed"
    copy_sequence("wall", images / "wall")
    copy_sequence("graf", images / "graf")
    report = keypoints.sfm(images, tmp_path / "out", preset=QUICKER, progress=False)
    assert report.images == 12 and report.registered + len(report.unregistered) == 12
    assert report.registered >= 6
    for rec in report.reconstructions.values():
        scenes = {rec.image(i).name.split("/")[0] for i in rec.reg_image_ids()}
        assert len(scenes) == 1, scenes  # each model holds one scene
    registered_walls = sum(
        rec.image(i).name.startswith("wall/")
        for rec in report.reconstructions.values()
        for i in rec.reg_image_ids()
    )
    assert registered_walls == 6


def _sfm_command(*args):
    return [sys.executable, "-m", "keypoints", "sfm", *map(str, args)]


@pytest.mark.slow
def test_sfm_killed_during_matching_resumes_to_the_same_model(tmp_path):
    """SIGKILL while matching; the rerun keeps the features and gives the same statistics as
    an uninterrupted run."""
    images = copy_sequence("wall", tmp_path / "wall")
    args = ["--preset", "aliked-mnn", "-q"]
    whole = keypoints.sfm(images, tmp_path / "whole", preset="aliked-mnn", progress=False)
    out = tmp_path / "killed"
    process = subprocess.Popen(_sfm_command(images, "-o", out, *args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("[3/5] match"):
                break
        time.sleep(0.5)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert (out / "features.h5").is_file() and not (out / "sparse").exists()
    rerun = subprocess.run(_sfm_command(images, "-o", out, *args), capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert "registered 6 / 6 images" in rerun.stdout
    resumed = keypoints.sfm(images, out, preset="aliked-mnn", progress=False)
    assert all(stage.skipped for stage in resumed.stages.values())
    assert statistics(resumed) == statistics(whole)


def test_summary_names_unregistered_and_bad_images(tmp_path):
    from keypoints.pipeline.sfm import SfmReport, StageReport

    report = SfmReport(tmp_path, images=3, registered=2, unregistered=["c.jpg"],
                       stages={"extract": StageReport(1.0, False, "")},
                       errors=[("broken.jpg", "truncated")])  # fmt: skip
    lines = report.summary()
    assert lines[0].startswith("registered 2 / 3 images in 0 model(s)")
    assert "not registered (1): c.jpg" in lines
    assert "bad images (1, see registration.txt): broken.jpg" in lines
    assert lines[-1] == "time: extract 1.0 s"


def test_sfm_errors_are_one_line(tmp_path, capsys):
    from keypoints.cli import main

    images = copy_sequence("wall", tmp_path / "wall")
    (tmp_path / "file").write_text("x")
    cases = [
        ([images, "-o", tmp_path / "o1", "--pairs", "retreival:5"], "did you mean"),
        ([images, "-o", tmp_path / "file"], "is a file"),
        ([images, "-o", tmp_path / "o2", "--preset", "nope"], "unknown preset 'nope'"),
        ([tmp_path / "nothing", "-o", tmp_path / "o3"], "nothing"),
    ]
    for args, message in cases:
        assert main(["sfm", *map(str, args)]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(images / "img1.ppm", one)
    assert main(["sfm", str(one), "-o", str(tmp_path / "o4"), "-q"]) == 2
    assert "at least two readable images" in capsys.readouterr().err


@pytest.mark.slow
def test_sfm_on_ray_builds_the_local_model(tmp_path, monkeypatch):
    """--engine ray: extraction and matching on a local Ray instance, the same model."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'keypoints[ray]')")
    import torch

    # actors on this process's thread count: their sums run in the same order, so the same bits
    monkeypatch.setenv("KEYPOINTS_RAY_THREADS", str(torch.get_num_threads()))
    images = copy_sequence("wall", tmp_path / "wall")
    local = keypoints.sfm(images, tmp_path / "local", preset=QUICK, progress=False)
    ray = keypoints.sfm(images, tmp_path / "ray", preset=QUICK, progress=False, engine="ray")
    assert statistics(ray) == statistics(local)
    assert (tmp_path / "ray" / "pairs.txt").read_text() == (
        tmp_path / "local" / "pairs.txt"
    ).read_text()
