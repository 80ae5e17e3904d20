"""Everything the README's Python examples show runs, with the Hub served from a local cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT
from test_weights import fill_hub_cache


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_examples_run(tmp_path, random_checkpoint):
    blocks = python_blocks()
    assert len(blocks) == 3
    fill_hub_cache(tmp_path / "hub", random_checkpoint)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "MPLBACKEND": "Agg",
    }
    for i, block in enumerate(blocks):
        script = tmp_path / f"block{i}.py"
        script.write_text(block)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert "Keypoints: tensor([" in subprocess.run(
        [sys.executable, str(tmp_path / "block0.py")], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    assert (tmp_path / "output_image.png").stat().st_size > 0
    assert (tmp_path / "cats_keypoints.png").stat().st_size > 0
