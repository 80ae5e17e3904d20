"""`keypoints download` and the Hub lookup: caches filled for an offline run, statuses, failures,
the "looking up" line, offline mode and an unreachable Hub. Never touches the network: the Hub is
a fake that writes huggingface_hub's cache layout, behind a listening socket on 127.0.0.1, and
release files are `file://` URLs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants
from huggingface_hub import errors as hf_errors
from test_weights import fill_hub_cache

import keypoints
from keypoints import WeightsNotFoundError
from keypoints.cli import main
from keypoints.models import lightglue, superpoint_open, weights
from keypoints.models.lightglue import LightGlueMatcher, release_file
from keypoints.models.registry import clear_cache
from keypoints.offline import DATASETS, download, download_names

REPO = "magic-leap-community/superpoint"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LOOKUP = f"keypoints: looking up {REPO} on the Hugging Face Hub ..."
_REAL_HF_HUB_DOWNLOAD = huggingface_hub.hf_hub_download


def _no_network(*args, **kwargs):
    raise AssertionError("the network was used")


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty Hub and keypoints caches in ``tmp_path``; online mode; fresh reachability answers."""
    hub, release = tmp_path / "hub", tmp_path / "keypoints-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("KEYPOINTS_CACHE", str(release))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("KEYPOINTS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(weights, "_REACHABILITY", {})
    monkeypatch.setattr(weights, "_ANNOUNCED", set())
    return hub, release


@pytest.fixture
def endpoint(monkeypatch):
    """A listening socket on 127.0.0.1 as the Hub's endpoint (the connection test succeeds)."""
    server = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield server
    server.close()


class FakeHub:
    """``hf_hub_download``: cache lookups go to the real function (no network); downloads copy
    the file from ``source`` into the cache layout (snapshots/<commit>/file, refs/main)."""

    def __init__(self, source: Path) -> None:
        self.source, self.calls = source, []

    def __call__(self, repo_id, filename, *, revision=None, cache_dir=None,
                 local_files_only=False, **kwargs):  # fmt: skip
        if local_files_only:
            return _REAL_HF_HUB_DOWNLOAD(repo_id, filename, revision=revision,
                                         cache_dir=cache_dir, local_files_only=True)  # fmt: skip
        print(f"fake hub: GET {repo_id}/{filename}", file=sys.stderr)
        self.calls.append((repo_id, filename))
        if not (self.source / filename).is_file():
            raise hf_errors.EntryNotFoundError(f"{filename} not in {repo_id}")
        root = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(COMMIT)
        target = root / "snapshots" / COMMIT / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.source / filename, target)
        return str(target)


@pytest.fixture
def fake_hub(caches, endpoint, random_checkpoint, monkeypatch):
    hub = FakeHub(random_checkpoint)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    return hub


@pytest.fixture
def releases(tmp_path, monkeypatch):
    """Release files served from a folder through ``file://`` URLs: cvg's LightGlue weights for
    SuperPoint (random, in our key names); the MIT SuperPoint's URL points at a missing file."""
    folder = tmp_path / "releases"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(LightGlueMatcher().state_dict(), folder / "superpoint_lightglue.pth")
    monkeypatch.setattr(lightglue, "CVG_URL", f"{folder.as_uri()}/{{}}_lightglue.pth")
    monkeypatch.setattr(superpoint_open, "WEIGHTS_URL", f"{folder.as_uri()}/absent.pth")
    return folder


def by_what(results):
    return {r.what: r for r in results}


# bundled and cached --------------------------------------------------------------------------


def test_bundled_names_report_bundled_without_any_network(caches, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_network)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    names = ["aliked-n16", "disk", "xfeat", "sift", "aliked-lightglue", "xfeat-lighterglue",
             "fast", "lightglue:aliked"]  # fmt: skip
    results = download(names)
    counts = [1, 1, 1, 1, 2, 2, 1, 1]  # presets with a LightGlue matcher have two parts
    assert [r.name for r in results] == [n for n, c in zip(names, counts) for _ in range(c)]
    assert {r.status for r in results} == {"bundled"}
    learned = [r for r in results if r.name != "sift"]
    assert all(r.path is not None and r.path.is_file() for r in learned)
    assert next(r for r in results if r.name == "sift").path is None
    assert main(["download", *names]) == 0
    out = capsys.readouterr().out
    assert out.count("bundled, nothing to download") == len(results)
    assert str(learned[0].path) in out


def test_cached_items_report_cached_with_their_path(caches, random_checkpoint, monkeypatch):
    hub, release = caches
    fill_hub_cache(hub, random_checkpoint)
    release.mkdir()
    (release / release_file("superpoint")).write_bytes(b"cached")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _REAL_HF_HUB_DOWNLOAD)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    results = by_what(download("superpoint-lightglue"))
    detector = results[f"detector superpoint (Hub: {REPO})"]
    assert detector.status == "cached"
    assert detector.path == hub / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / (
        "model.safetensors")  # fmt: skip
    matcher = results["LightGlue weights superpoint (cvg release)"]
    assert matcher.status == "cached" and matcher.path == release / release_file("superpoint")


def test_list_reports_missing_and_downloads_nothing(caches, fake_hub, capsys):
    assert main(["download", "--list", "superpoint-lightglue"]) == 0
    out = capsys.readouterr().out
    assert out.count("missing (not downloaded)") == 2 and not fake_hub.calls
    assert main(["download", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in listed} == {*keypoints.MODELS, *(
        f"lightglue:{n}" for n in lightglue.WEIGHT_NAMES)}  # fmt: skip


# downloading ---------------------------------------------------------------------------------


def test_download_fills_the_caches_an_offline_run_reads(caches, fake_hub, releases, capsys):
    hub, release = caches
    assert main(["download", "superpoint-lightglue"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("downloaded") == 2, captured.out
    assert {f for _, f in fake_hub.calls} == {"config.json", "model.safetensors",
                                              "preprocessor_config.json"}  # fmt: skip
    assert (release / release_file("superpoint")).is_file()
    # a fresh process, offline, reads them
    script = (
        "import keypoints\n"
        "from keypoints.models.lightglue import LightGlue\n"
        "net = keypoints.load_model('superpoint')\n"
        f"processor = keypoints.AutoImageProcessor.from_pretrained({REPO!r})\n"
        "matcher = LightGlue.from_pretrained('superpoint')\n"
        "print(net.name, matcher.features)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "KEYPOINTS_CACHE": str(release),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["superpoint", "superpoint"]
    assert "looking up" not in result.stderr
    # a second download finds them
    fake_hub.calls.clear()
    assert {r.status for r in download("superpoint-lightglue")} == {"cached"}
    assert not fake_hub.calls


def test_a_hub_id_downloads_its_checkpoint(caches, fake_hub):
    (result,) = download("someone/superpoint-copy")
    assert result.status == "downloaded" and result.path is not None
    assert result.path.name == "model.safetensors"
    assert ("someone/superpoint-copy", "config.json") in fake_hub.calls


def test_unknown_name_fails_with_a_suggestion_before_any_download(caches, fake_hub, capsys):
    code = main(["download", "superpoint", "superpont"])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'superpoint'" in err
    assert len(err.strip().splitlines()) == 1
    assert not fake_hub.calls and not (caches[0]).exists()
    with pytest.raises(keypoints.ConfigError, match="did you mean 'superpoint-lightglue'"):
        download(["superpoint", "superpoint-lightglu"])
    assert not fake_hub.calls


def test_one_failure_does_not_stop_the_others(caches, fake_hub, releases, capsys):
    code = main(["download", "superpoint-open", "superpoint"])
    captured = capsys.readouterr()
    assert code == 2
    rows = {line.split()[0]: line for line in captured.out.splitlines()[2:] if line.strip()}
    assert "failed: could not download" in rows["superpoint-open"]
    assert "absent.pth" in rows["superpoint-open"]
    assert rows["superpoint"].rstrip().endswith("downloaded")
    assert "1 of 2 download(s) failed" in captured.err
    results = download(["superpoint-open", "superpoint"])
    assert [r.status for r in results] == ["failed", "cached"] and results[0].failed


# the lookup line, offline mode, an unreachable Hub -------------------------------------------


def test_lookup_line_comes_before_the_hub_and_q_silences_it(caches, fake_hub, capsys):
    assert main(["download", "superpoint"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == LOOKUP, err
    assert err.count(LOOKUP) == 1 and err[1].startswith("fake hub: GET")

    hub, _ = caches
    shutil.rmtree(hub)
    weights._ANNOUNCED.clear()
    assert main(["download", "superpoint", "-q"]) == 0
    err = capsys.readouterr().err
    assert "looking up" not in err and "fake hub: GET" in err


def test_python_api_prints_the_lookup_line_unless_ignored(caches, fake_hub, capsys):
    import warnings

    keypoints.load_model("superpoint")
    assert capsys.readouterr().err.splitlines()[0] == LOOKUP
    clear_cache()
    shutil.rmtree(caches[0])
    weights._ANNOUNCED.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", weights.DownloadNotice)
        keypoints.load_model("superpoint")
    clear_cache()
    assert "looking up" not in capsys.readouterr().err


def test_offline_mode_makes_no_network_call(caches, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []

    def network(*args, **kwargs):
        if kwargs.get("local_files_only"):
            return _REAL_HF_HUB_DOWNLOAD(*args, **kwargs)
        calls.append(args)
        raise AssertionError("the network was used")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", network)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    with pytest.raises(WeightsNotFoundError, match="offline mode is on") as info:
        keypoints.load_model("superpoint")
    copy = pickle.loads(pickle.dumps(info.value))  # as a worker process would send it back
    assert str(copy) == str(info.value) and copy.reason == "offline mode is on (HF_HUB_OFFLINE=1)"
    assert main(["download", "superpoint-lightglue", "superpoint-open"]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("failed: offline mode is on") == 3
    assert "looking up" not in captured.err and "downloading" not in captured.err
    assert not calls


def test_unreachable_hub_fails_at_once_without_retries(caches, monkeypatch, capsys):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the connection is refused
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(Path("/nowhere")))
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as info:
        keypoints.load_model("superpoint")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert f"the Hub is unreachable (127.0.0.1:{port}" in message
    assert f"keypoints download {REPO}" in message and "not in the local cache" in message
    err = capsys.readouterr().err
    assert LOOKUP in err and "fake hub: GET" not in err


def test_a_silent_network_is_not_waited_for(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(5)  # then time out as a real socket would (the thread outlives the test)
        raise TimeoutError("timed out")

    monkeypatch.setattr(weights, "_REACHABILITY", {})
    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    reason = weights.unreachable("https://example.invalid/x", timeout=0.2)
    assert time.monotonic() - start < 1
    assert reason == "example.invalid:443: no answer within 0.2 s"


def test_the_connection_test_goes_to_the_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    assert weights._endpoint_address("https://huggingface.co") == ("proxy.example", 3128)
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert weights._endpoint_address("https://huggingface.co") == ("huggingface.co", 443)


# every name, and the datasets ----------------------------------------------------------------


def test_every_detector_and_preset_has_a_recipe_that_agrees_with_the_registry(caches):
    results = download(download_names(), fetch=False)
    status = {}
    for r in results:
        status.setdefault(r.name, []).append(r.status)
    for name, info in keypoints.MODELS.items():
        assert (set(status[name]) <= {"bundled", "cached"}) == info.available(), name
    for name, preset in keypoints.PRESETS.items():
        assert (set(status[name]) <= {"bundled", "cached"}) == preset.offline, name
    assert status["superpoint-lightglue"] == ["missing", "missing"]


def test_datasets_are_pointed_to(capsys):
    assert main(["download", "--datasets"]) == 0
    out = capsys.readouterr().out
    for dataset in DATASETS.values():
        assert dataset.home in out
    assert "hpatches-sequences-release.tar.gz" in out and "H1to2p" in out and "H_1_2" in out
    assert main(["download", "--help"]) == 0
    assert "https://github.com/hpatches/hpatches-dataset" in capsys.readouterr().out
    assert main(["download"]) == 2
