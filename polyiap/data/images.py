"""Image loading and the transform to the backbone's resolution."""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def load_image(path: Path | bytes, resolution: int) -> torch.Tensor:
    """Return the image resized (short side) and centre-cropped to a square, as (3, H, W) in [-1, 1].

    ``path`` is a file or the encoded image itself (the bytes of a shard member).
    """
    with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as image:
        image = image.convert("RGB")
        scale = resolution / min(image.size)
        size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        pixels = np.asarray(image, dtype=np.float32) / 127.5 - 1.0  # (H, W, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
