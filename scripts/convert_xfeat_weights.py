"""Convert the released XFeat weights (verlab/accelerated_features ``weights/xfeat.pt``,
Apache-2.0) into the safetensors file bundled in ``src/keypoints/weights/``.

    python scripts/convert_xfeat_weights.py ../shared/data/weights/xfeat/xfeat.pt

The .pt file is read with ``weights_only=True``; tensors and key names are kept as they are
(all 122 entries, BatchNorm running statistics and XFeat*'s ``fine_matcher.*`` included).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[1] / "src" / "keypoints" / "weights" / "xfeat.safetensors"


def main(path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    tensors = {k: v.contiguous() for k, v in state.items()}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    save_file(tensors, OUT, metadata={"source_sha256": digest})
    OUT.chmod(0o644)  # safetensors writes owner-only files; package data is world-readable
    print(f"xfeat: {len(tensors)} tensors, source sha256 {digest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
