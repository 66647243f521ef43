"""A cache of VAE posteriors, so that training skips image decoding and the VAE encoder.

The cache stores the posterior's mean and standard deviation, not a latent sample, so training still
draws a fresh sample per step with its own generator, exactly as it does from pixels. It is keyed by
the VAE's weights, the image size and the image transform, so a cache built for another backbone or
resolution is rejected.
"""

import hashlib
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from polyiap.backbones import Backbone
from polyiap.data import Triplet
from polyiap.data.images import load_image
from polyiap.errors import PolyiapError
from polyiap.train.tensor_cache import CacheReader, TensorCache, build_cache

KIND = "latents"
COMMAND = "polyiap cache latents"
FORMAT = 1
# Identifies polyiap.data.images.load_image; change it when that transform changes.
TRANSFORM = "rgb, short side bicubic to resolution, centre crop, [-1, 1]"


def weights_sha256(*modules: nn.Module) -> str:
    """Return one SHA-256 over the named tensors of ``modules``."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(backbone: Backbone, resolution: int) -> dict:
    """Return what the cached posteriors depend on: the VAE's weights, the image size and transform."""
    return {"format": FORMAT, "vae_sha256": weights_sha256(backbone.latent_encoder()), "resolution": resolution,
            "transform": TRANSFORM}


def image_keys(triplets: list[Triplet], data_root: Path) -> list[str]:
    """Return the sorted, distinct image paths of ``triplets`` relative to the data file's folder."""
    return sorted({os.path.relpath(t.image, data_root) for t in triplets})


def open_latents_cache(folder: Path) -> TensorCache:
    return TensorCache.open(folder, KIND, COMMAND)


def image_stamps(images: list[str], data_root: Path) -> dict[str, list]:
    """Return {image: [size in bytes, modification time in ns]}, which change when a file is edited."""
    stamps = {}
    for name in images:
        status = (data_root / name).stat()
        stamps[name] = [status.st_size, status.st_mtime_ns]
    return stamps


def check_latents_cache(cache: TensorCache, backbone: Backbone, resolution: int, images: list[str],
                        data_root: Path) -> None:
    """Raise when the cache does not match this run, including image files changed after the build."""
    cache.check(cache_key(backbone, resolution), images, COMMAND)
    if cache.stamps is None:
        return
    for name, stamp in image_stamps(images, data_root).items():
        if cache.stamps.get(name) != stamp:
            raise PolyiapError(f"latents cache {cache.folder} is stale: image {name!r} changed after the cache was "
                               f"built (size and modification time differ); rebuild it with `{COMMAND}` into a "
                               "new folder")


def build_latents_cache(backbone: Backbone, images: list[str], data_root: Path, resolution: int, output: Path,
                        shard_size: int = 1024, batch_size: int = 8, dtype: torch.dtype = torch.float32,
                        on_progress: Callable[[int, int], None] = lambda done, total: None) -> TensorCache:
    """Encode every image into ``output``, resuming an interrupted build of the same cache."""
    def encode(names: list[str]) -> dict[str, torch.Tensor]:
        pixels = torch.stack([load_image(data_root / name, resolution) for name in names])
        mean, std = backbone.encode_posterior(pixels)
        return {"mean": mean, "std": std}

    return build_cache(output, KIND, cache_key(backbone, resolution), images, ["mean", "std"], encode, shard_size,
                       batch_size, dtype, on_progress, image_stamps(images, data_root))


class CachedTripletDataset(Dataset):
    """Triplets whose images come from a latents cache as posterior mean and standard deviation."""

    def __init__(self, triplets: list[Triplet], cache: TensorCache, data_root: Path):
        self.triplets, self.data_root = triplets, data_root
        self.reader = CacheReader(cache)

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int) -> dict:
        triplet = self.triplets[index]
        entry = self.reader.get(os.path.relpath(triplet.image, self.data_root))
        return {"latent_mean": entry["mean"].float(), "latent_std": entry["std"].float(),
                "english": triplet.english, "target": triplet.target}
