"""Convert the released DISK "depth" checkpoint (cvlab-epfl/disk ``depth-save.pth``, Apache-2.0)
into the safetensors file bundled in ``src/keypoints/weights/``.

    python scripts/convert_disk_weights.py ../shared/data/weights/disk/disk-depth-save.pth

The .pth file is read with ``weights_only=True``; its ``extractor`` state dict (the U-Net,
``unet.path_down.*`` and ``unet.path_up.*``) is kept as it is, tensors and key names.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = (
    Path(__file__).resolve().parents[1] / "src" / "keypoints" / "weights" / "disk-depth.safetensors"
)


def main(source: Path) -> None:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    tensors = {k: v.contiguous() for k, v in checkpoint["extractor"].items()}
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    save_file(tensors, OUT, metadata={"source_sha256": digest})
    print(f"{OUT.name}: {len(tensors)} tensors, source sha256 {digest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
