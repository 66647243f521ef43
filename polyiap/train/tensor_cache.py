"""Sharded safetensors caches of per-item tensors, keyed by what produced them; resumable by shard.

Layout of a cache folder::

    cache.json              kind, key (what the tensors depend on), item names, shard size
    shard-00000.safetensors one tensor per field, (N, ...), for items [0, shard_size)
    ...

Shards are written whole and renamed into place, so an interrupted build resumes at the first
missing or damaged shard, and a reader never sees half a shard.
"""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from polyiap.errors import PolyiapError

logger = logging.getLogger(__name__)

CACHE_FILE = "cache.json"


@dataclass
class TensorCache:
    folder: Path
    kind: str
    key: dict
    names: list[str]
    fields: list[str]
    shard_size: int
    dtype: str = "float32"
    stamps: dict[str, list] | None = None

    @classmethod
    def open(cls, folder: Path, kind: str, command: str) -> "TensorCache":
        """Open the cache of ``kind`` in ``folder``; ``command`` is the one that builds it, for messages."""
        path = Path(folder) / CACHE_FILE
        if not path.is_file():
            raise PolyiapError(f"{folder} is not a {kind} cache (no {CACHE_FILE}); build one with `{command}`")
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("kind") != kind:
            raise PolyiapError(f"{folder} is a {record.get('kind')} cache, not a {kind} cache; pass a {kind} cache "
                               f"folder, or build one in a new folder with `{command}`")
        return cls(Path(folder), kind, record["key"], record["names"], record["fields"], record["shard_size"],
                   record.get("dtype", "float32"), record.get("stamps"))

    def shard_path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:05d}.safetensors"

    @property
    def shard_count(self) -> int:
        return (len(self.names) + self.shard_size - 1) // self.shard_size

    def rows(self, shard: int) -> int:
        return min(self.shard_size, len(self.names) - shard * self.shard_size)

    def missing_shards(self) -> list[int]:
        return [shard for shard in range(self.shard_count) if not self._complete(shard)]

    def _complete(self, shard: int) -> bool:
        try:
            with safe_open(str(self.shard_path(shard)), framework="pt") as handle:
                return all(handle.get_slice(name).get_shape()[0] == self.rows(shard) for name in self.fields)
        except (OSError, KeyError, SafetensorError):  # absent, or not a complete safetensors file
            return False

    def check(self, key: dict, names: list[str], command: str) -> None:
        """Raise when the cache was built from something else, lacks one of ``names`` or is incomplete."""
        for field, expected in key.items():
            if self.key.get(field) != expected:
                raise PolyiapError(
                    f"{self.kind} cache {self.folder} is stale: it was built with {field}={self.key.get(field)!r}, "
                    f"this run needs {expected!r}; rebuild it with `{command}` into a new folder")
        absent = sorted(set(names) - set(self.names))
        if absent:
            raise PolyiapError(f"{self.kind} cache {self.folder} lacks {len(absent)} of this run's entries, for "
                               f"example {absent[0]!r}; rebuild it for this data with `{command}`")
        missing = self.missing_shards()
        if missing:
            raise PolyiapError(f"{self.kind} cache {self.folder} is incomplete ({len(missing)} shard(s) missing); "
                               f"re-run `{command}` with --output {self.folder} --shard-size {self.shard_size} "
                               f"--dtype {self.dtype} to finish it")


def build_cache(output: Path, kind: str, key: dict, names: list[str], fields: list[str],
                encode: Callable[[list[str]], dict[str, torch.Tensor]], shard_size: int, batch_size: int,
                dtype: torch.dtype, on_progress: Callable[[int, int], None],
                stamps: dict[str, list] | None = None) -> TensorCache:
    """Fill ``output`` with ``encode(batch of names)`` for every name, resuming an interrupted build.

    ``stamps`` records, per name, what identifies its source file (size and modification time).
    """
    expected = TensorCache(output, kind, key, names, fields, shard_size, str(dtype).removeprefix("torch."), stamps)
    cache = _claim(expected)
    missing = set(cache.missing_shards())
    done = sum(cache.rows(shard) for shard in range(cache.shard_count) if shard not in missing)
    on_progress(done, len(names))
    for shard in sorted(missing):
        shard_names = names[shard * shard_size:(shard + 1) * shard_size]
        parts: dict[str, list[torch.Tensor]] = {field: [] for field in fields}
        for start in range(0, len(shard_names), batch_size):
            batch = shard_names[start:start + batch_size]
            for field, tensor in encode(batch).items():
                parts[field].append(tensor.detach().to("cpu", dtype))
            done += len(batch)
            on_progress(done, len(names))
        temporary = output / f".{cache.shard_path(shard).name}.tmp"
        save_file({field: torch.cat(tensors).contiguous() for field, tensors in parts.items()}, str(temporary))
        os.chmod(temporary, 0o666 & ~_umask())  # readable like cache.json, for a cache shared between users
        os.replace(temporary, cache.shard_path(shard))
    return cache


def _claim(expected: TensorCache) -> TensorCache:
    """Start the cache ``expected`` in its folder, or check that the folder contains that same cache."""
    output, kind = expected.folder, expected.kind
    if output.exists() and not output.is_dir():
        raise PolyiapError(f"--output {output} is a file; pass a folder for the {kind} cache")
    if (output / CACHE_FILE).is_file():
        cache = TensorCache.open(output, kind, f"polyiap cache {kind}")
        for field in ("key", "names", "fields", "shard_size", "dtype", "stamps"):
            if getattr(cache, field) != getattr(expected, field):
                hint = {"shard_size": f" (it was started with --shard-size {cache.shard_size})",
                        "dtype": f" (it was started with --dtype {cache.dtype})"}.get(field, "")
                raise PolyiapError(f"{output} contains a {kind} cache with another {field}{hint}; resume it with "
                                   "the same data and options, or pass a new --output folder")
        logger.info("resuming the %s cache in %s: %d of %d shards are complete", kind, output,
                    cache.shard_count - len(cache.missing_shards()), cache.shard_count)
        return cache
    if output.is_dir() and any(output.iterdir()):
        raise PolyiapError(f"{output} is not empty and contains no {CACHE_FILE}; pass a new or empty --output folder")
    output.mkdir(parents=True, exist_ok=True)
    record = {"kind": kind, "key": expected.key, "fields": expected.fields, "shard_size": expected.shard_size,
              "dtype": expected.dtype, "names": expected.names, "stamps": expected.stamps}
    temporary = output / f".{CACHE_FILE}.tmp"
    temporary.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, output / CACHE_FILE)
    return expected


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class CacheReader:
    """Reads single entries of a cache by name; shards are opened lazily, once per process."""

    def __init__(self, cache: TensorCache):
        self.cache = cache
        self.row = {name: index for index, name in enumerate(cache.names)}
        self._handles: dict[int, object] = {}

    def __getstate__(self) -> dict:  # open shard handles do not travel to data loader workers
        return {**self.__dict__, "_handles": {}}

    def get(self, name: str) -> dict[str, torch.Tensor]:
        shard, offset = divmod(self.row[name], self.cache.shard_size)
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.cache.shard_path(shard)), framework="pt")
        handle = self._handles[shard]
        return {field: handle.get_slice(field)[offset:offset + 1][0] for field in self.cache.fields}
