"""Convert the released ALIKED checkpoints (Shiaoming/ALIKED ``models/*.pth``, BSD-3) into the
safetensors files bundled in ``src/keypoints/weights/``.

    python scripts/convert_aliked_weights.py ../shared/data/weights/aliked

The .pth files are read with ``weights_only=True``; tensors and key names are kept as they are.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

VARIANTS = ("aliked-t16", "aliked-n16", "aliked-n16rot", "aliked-n32")
OUT = Path(__file__).resolve().parents[1] / "src" / "keypoints" / "weights"


def main(source: Path) -> None:
    for name in VARIANTS:
        path = source / f"{name}.pth"
        state = torch.load(path, map_location="cpu", weights_only=True)
        tensors = {k: v.contiguous() for k, v in state.items()}
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        save_file(tensors, OUT / f"{name}.safetensors", metadata={"source_sha256": digest})
        print(f"{name}: {len(tensors)} tensors, source sha256 {digest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
