"""Convert released LightGlue weights into the safetensors files bundled with the package.

    python scripts/convert_lightglue_weights.py ../shared/data/weights

Reads cvg's ``lightglue/aliked_lightglue.pth`` (cvg/LightGlue release v0.1_arxiv, Apache-2.0)
and the matcher half of verlab's ``xfeat/xfeat-lighterglue.pt`` (verlab/accelerated_features,
Apache-2.0) with ``weights_only=True`` and maps them to our parameter names
(:func:`keypoints.models.lightglue.convert_cvg_state_dict`). ALIKED's LightGlue (48 MB) is
stored as fp16, measured harmless by ``benchmarks/bench_fp16_matcher.py`` (ALIKED-n16, 2048
keypoints, the 15 Oxford pairs: 99.94% of the matches identical to fp32, MMA@3 0.7579 vs
0.7578, H@1/3/5 equal, AUC@5 0.4908 vs 0.4933); LighterGlue (5 MB) stays fp32. Each file's
metadata records the source's sha256, URL, license and storage dtype.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from keypoints.models.lightglue import (
    CVG_URL,
    LIGHTERGLUE_URL,
    convert_cvg_state_dict,
    matcher_part,
)

OUT = Path(__file__).resolve().parents[1] / "src" / "keypoints" / "weights"
SOURCES = {  # bundled file -> (file under the shared weights folder, URL, license, dtype)
    "aliked_lightglue.safetensors": (
        "lightglue/aliked_lightglue.pth",
        CVG_URL.format("aliked"),
        "Apache-2.0 (cvg/LightGlue)",
        torch.float16,
    ),
    "xfeat_lighterglue.safetensors": (
        "xfeat/xfeat-lighterglue.pt",
        LIGHTERGLUE_URL,
        "Apache-2.0 (verlab/accelerated_features)",
        torch.float32,
    ),
}


def main(source: Path) -> None:
    for name, (relative, url, license_, dtype) in SOURCES.items():
        path = source / relative
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = convert_cvg_state_dict(matcher_part(state))
        tensors = {k: v.to(dtype).contiguous() for k, v in state.items()}
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        metadata = {"source_sha256": digest, "source_url": url, "license": license_,
                    "dtype": str(dtype)}  # fmt: skip
        save_file(tensors, OUT / name, metadata=metadata)
        (OUT / name).chmod(0o644)
        print(f"{name}: {len(tensors)} tensors ({dtype}), source sha256 {digest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
