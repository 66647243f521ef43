"""A cache of VAE posteriors, so that training skips image decoding and the VAE encoder.

Layout of a cache folder::

    cache.json              key (backbone VAE weights, resolution, image transform), image list, shard size
    shard-00000.safetensors `mean` and `std` of the posterior, (N, C, h, w), for images [0, shard_size)
    ...

The cache stores the posterior, not a latent sample, so training still draws a fresh sample per step
with its own generator, exactly as it does from pixels. Shards are written whole and renamed into
place, so an interrupted build resumes at the first missing shard.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from polyiap.backbones import Backbone
from polyiap.data import Triplet
from polyiap.data.images import load_image
from polyiap.errors import PolyiapError

CACHE_FILE = "cache.json"
FORMAT = 1
# Identifies polyiap.data.images.load_image; change it when that transform changes.
TRANSFORM = "rgb, short side bicubic to resolution, centre crop, [-1, 1]"


def cache_key(backbone: Backbone, resolution: int) -> dict:
    """Return what the cached posteriors depend on: the VAE's weights, the image size and transform."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.latent_encoder().state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return {"format": FORMAT, "vae_sha256": digest.hexdigest(), "resolution": resolution, "transform": TRANSFORM}


def image_keys(triplets: list[Triplet], data_root: Path) -> list[str]:
    """Return the sorted, distinct image paths of ``triplets`` relative to the data file's folder."""
    return sorted({os.path.relpath(t.image, data_root) for t in triplets})


@dataclass
class LatentsCache:
    folder: Path
    key: dict
    images: list[str]
    shard_size: int

    @classmethod
    def open(cls, folder: Path) -> "LatentsCache":
        path = Path(folder) / CACHE_FILE
        if not path.is_file():
            raise PolyiapError(f"{folder} is not a latents cache (no {CACHE_FILE}); build one with "
                               "`polyiap cache latents --output DIR` or unset data.latents_cache")
        record = json.loads(path.read_text(encoding="utf-8"))
        return cls(Path(folder), record["key"], record["images"], record["shard_size"])

    def shard_path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:05d}.safetensors"

    @property
    def shard_count(self) -> int:
        return (len(self.images) + self.shard_size - 1) // self.shard_size

    def missing_shards(self) -> list[int]:
        return [shard for shard in range(self.shard_count) if not _complete(self.shard_path(shard), self._rows(shard))]

    def _rows(self, shard: int) -> int:
        return min(self.shard_size, len(self.images) - shard * self.shard_size)

    def check(self, key: dict, images: list[str]) -> None:
        """Raise when the cache was built for another backbone, size or transform, or lacks an image."""
        for field, expected in key.items():
            if self.key.get(field) != expected:
                raise PolyiapError(
                    f"latents cache {self.folder} is stale: it was built with {field}={self.key.get(field)!r}, "
                    f"this run needs {expected!r}; rebuild it with `polyiap cache latents` into a new folder")
        absent = sorted(set(images) - set(self.images))
        if absent:
            raise PolyiapError(f"latents cache {self.folder} lacks {len(absent)} of this run's images, for example "
                               f"{absent[0]!r}; rebuild it for this data with `polyiap cache latents`")
        if self.missing_shards():
            raise PolyiapError(f"latents cache {self.folder} is incomplete ({len(self.missing_shards())} shards "
                               "missing); re-run the same `polyiap cache latents` command to finish it")


def _complete(path: Path, rows: int) -> bool:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return all(handle.get_slice(name).get_shape()[0] == rows for name in ("mean", "std"))
    except (OSError, KeyError, SafetensorError):  # absent, or not a complete safetensors file
        return False


def build_latents_cache(backbone: Backbone, images: list[str], data_root: Path, resolution: int, output: Path,
                        shard_size: int = 1024, batch_size: int = 8, dtype: torch.dtype = torch.float32,
                        on_progress: Callable[[int, int], None] = lambda done, total: None) -> LatentsCache:
    """Encode every image into ``output``, resuming an interrupted build of the same cache."""
    key = cache_key(backbone, resolution)
    cache = _claim(output, key, images, shard_size)
    missing = set(cache.missing_shards())
    done = sum(cache._rows(shard) for shard in range(cache.shard_count) if shard not in missing)
    on_progress(done, len(images))
    for shard in sorted(missing):
        names = images[shard * shard_size:(shard + 1) * shard_size]
        means, stds = [], []
        for start in range(0, len(names), batch_size):
            pixels = torch.stack([load_image(data_root / name, resolution) for name in names[start:start + batch_size]])
            mean, std = backbone.encode_posterior(pixels)
            means.append(mean.to("cpu", dtype))
            stds.append(std.to("cpu", dtype))
            done += len(pixels)
            on_progress(done, len(images))
        temporary = output / f".{cache.shard_path(shard).name}.tmp"
        save_file({"mean": torch.cat(means).contiguous(), "std": torch.cat(stds).contiguous()}, str(temporary))
        os.replace(temporary, cache.shard_path(shard))
    return cache


def _claim(output: Path, key: dict, images: list[str], shard_size: int) -> LatentsCache:
    """Start a cache in ``output``, or check that an existing one is the same cache."""
    path = output / CACHE_FILE
    if path.is_file():
        cache = LatentsCache.open(output)
        if cache.key != key or cache.images != images or cache.shard_size != shard_size:
            raise PolyiapError(f"{output} contains a latents cache of other images, another backbone or shard size; "
                               "pass a new --output folder")
        return cache
    if output.is_dir() and any(output.iterdir()):
        raise PolyiapError(f"{output} is not empty and contains no {CACHE_FILE}; pass a new or empty --output folder")
    output.mkdir(parents=True, exist_ok=True)
    temporary = output / f".{CACHE_FILE}.tmp"
    temporary.write_text(json.dumps({"key": key, "shard_size": shard_size, "images": images}, indent=1) + "\n",
                         encoding="utf-8")
    os.replace(temporary, path)
    return LatentsCache(output, key, images, shard_size)


class CachedTripletDataset(Dataset):
    """Triplets whose images come from a latents cache as posterior mean and standard deviation."""

    def __init__(self, triplets: list[Triplet], cache: LatentsCache, data_root: Path):
        self.triplets, self.cache, self.data_root = triplets, cache, data_root
        self.row = {name: index for index, name in enumerate(cache.images)}
        self._handles: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int) -> dict:
        triplet = self.triplets[index]
        row = self.row[os.path.relpath(triplet.image, self.data_root)]
        shard, offset = divmod(row, self.cache.shard_size)
        if shard not in self._handles:  # opened once per worker process; safetensors maps the file lazily
            self._handles[shard] = safe_open(str(self.cache.shard_path(shard)), framework="pt")
        handle = self._handles[shard]
        return {"latent_mean": handle.get_slice("mean")[offset:offset + 1][0].float(),
                "latent_std": handle.get_slice("std")[offset:offset + 1][0].float(),
                "english": triplet.english, "target": triplet.target}
