"""Training triplets streamed from WebDataset shards, split across processes and data loader workers.

Every epoch shuffles the shard order with (seed, epoch). Process ``rank`` of ``world`` reads shards
``rank::world`` of that order, and data loader worker ``w`` of ``W`` reads every ``W``-th of those.
So no two readers share a shard. Each worker cycles through its shards until the epoch's fixed number of
batches is taken, which keeps the batch count equal on every process (distributed training needs
that). Images are held out by a hash of their bytes, so an image with several captions is always on
one side and every process agrees on the split without talking to the others.
"""

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from polyiap.data.images import load_image
from polyiap.data.shards import TarSamples, find_shards
from polyiap.data.triplets import Triplet, TripletFields
from polyiap.errors import DataError

logger = logging.getLogger(__name__)

SHUFFLE_BUFFER = 256  # samples each worker shuffles among
CAPTION_SAMPLE = 100_000  # training captions read up front for the tiny student's vocabulary and baselines


@dataclass
class ShardSet:
    """The shards of one dataset with their sample counts (from ``manifest.json`` or counted)."""

    folder: Path
    shards: list[Path]
    counts: list[int]
    images: int | None = None


def is_shard_folder(source: str | Path) -> bool:
    path = Path(source)
    return path.is_dir() and bool(find_shards(path))


def open_shard_set(folder: Path) -> ShardSet:
    """List the shards of ``folder``; `polyiap prepare`'s manifest gives their sizes, else they are counted."""
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = [entry for entry in data["shards"] if entry["samples"] > 0]
        return ShardSet(folder, [folder / entry["file"] for entry in entries], [entry["samples"] for entry in entries],
                        data.get("images"))
    shards = find_shards(folder)
    counts = [_count_samples(path) for path in shards]
    return ShardSet(folder, [p for p, c in zip(shards, counts) if c], [c for c in counts if c])


def _count_samples(path: Path) -> int:
    keys = set()
    for sample in TarSamples(path):
        keys.add(sample["__key__"])
    return len(keys)


def heldout_share(shards: ShardSet, heldout: int | float) -> float:
    """Return the share of images to hold out; a count needs the image total that the manifest records."""
    if heldout < 1:
        return float(heldout)
    if not shards.images:
        raise DataError(f"data.heldout_images={heldout} is a count of images, but {shards.folder} has no manifest.json "
                        "with the number of images; set a share instead, e.g. --set data.heldout_images=0.05")
    if heldout >= shards.images:
        raise DataError(f"data.heldout_images={heldout} sets aside every one of the {shards.images} images in "
                        f"{shards.folder}, leaving none to train on; lower it")
    return heldout / shards.images


def is_heldout(image_sha1: str, share: float) -> bool:
    return int(image_sha1[:8], 16) / 2**32 < share


@dataclass
class SampleReader:
    """Turns shard samples into triplets; ``skipped`` counts what could not be used, by reason."""

    fields: TripletFields
    normalize: Callable[[str], str] | None = None
    skipped: Counter = field(default_factory=Counter)

    def read(self, sample: dict) -> tuple[Triplet, str] | None:
        """Return (triplet with the image bytes, image SHA-1), or None when the sample is unusable."""
        metadata = self._metadata(sample)
        image = next((sample[e] for e in ("jpg", "jpeg", "png", "webp") if e in sample), None)
        english, target = self._text(sample, metadata, self.fields.english), self._text(sample, metadata,
                                                                                          self.fields.target)
        reason = ("missing image" if image is None else "missing English caption" if english is None
                  else f"missing {self.fields.target!r} caption" if target is None
                  else "empty caption" if not english.strip() or not target.strip() else None)
        if reason:
            self.skipped[reason] += 1
            return None
        target = self.normalize(target) if self.normalize else target
        sha1 = metadata.get("image_sha1") or hashlib.sha1(image).hexdigest()
        return Triplet(image, english.strip(), target), sha1

    def _metadata(self, sample: dict) -> dict:
        try:
            return json.loads(sample["json"]) if "json" in sample else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}

    @staticmethod
    def _text(sample: dict, metadata: dict, name: str) -> str | None:
        if f"{name}.txt" in sample:
            return sample[f"{name}.txt"].decode("utf-8", errors="replace")
        value = metadata.get(name)
        return value if isinstance(value, str) else None


def scan(shards: ShardSet, reader: SampleReader, share: float, heldout_max: int,
         caption_limit: int = CAPTION_SAMPLE) -> tuple[list[Triplet], list[tuple[str, str]]]:
    """Read shards in order until ``heldout_max`` held-out triplets and ``caption_limit`` training captions are found.

    Returns the held-out triplets (with image bytes) and (English, target) pairs of training triplets.
    """
    heldout, captions = [], []
    for path in shards.shards:
        for sample in TarSamples(path):
            found = reader.read(sample)
            if found is None:
                continue
            triplet, sha1 = found
            if is_heldout(sha1, share):
                if len(heldout) < heldout_max:
                    heldout.append(triplet)
            elif len(captions) < caption_limit:
                captions.append((triplet.english, triplet.target))
        if len(heldout) >= heldout_max and len(captions) >= caption_limit:
            break
    return heldout, captions


class ShardTriplets(IterableDataset):
    """The training triplets of one process for one epoch, as dicts of pixels and captions.

    Args:
        shards: the dataset's shards.
        reader: parses samples and counts the unusable ones.
        share: held-out share of images; held-out samples are never yielded.
        resolution: image side in pixels.
        seed, epoch: fix the shard order, the assignment and the shuffle.
        rank, world: this process and the number of processes.
        skip_batches: batches of this epoch the process already trained on (when resuming).
        batch_size: samples per batch, to turn ``skip_batches`` into samples per worker.
        trace: file that gets one ``epoch rank worker-role shard`` line per shard opened, or None.
    """

    def __init__(self, shards: ShardSet, reader: SampleReader, share: float, resolution: int, seed: int, epoch: int,
                 rank: int, world: int, skip_batches: int = 0, batch_size: int = 1, trace: Path | None = None):
        self.shards, self.reader, self.share, self.resolution = shards, reader, share, resolution
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.skip_batches, self.batch_size, self.trace = skip_batches, batch_size, trace

    def process_shards(self) -> list[Path]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards.shards))
        return [self.shards.shards[i] for i in order[self.rank::self.world]]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # The loader takes batches from its workers in turn, starting with worker 0, so the stream that made
        # batch skip_batches + j of the epoch must go to worker j % W: worker w takes over that role.
        role = (worker + self.skip_batches) % workers
        mine = self.process_shards()[role::workers]
        skip = len(range(role, self.skip_batches, workers)) * self.batch_size
        counts = dict(zip(self.shards.shards, self.shards.counts))
        # A buffer larger than the worker's data would mix the next round's samples into this one.
        buffer = max(1, min(SHUFFLE_BUFFER, sum(counts[path] for path in mine)))
        stream = self._shuffled(self._cycle(mine, role), role, buffer)
        for sample in islice(stream, skip, None):
            pixels = self._pixels(sample.image)
            if pixels is not None:
                yield {"pixels": pixels, "english": sample.english, "target": sample.target}

    def _cycle(self, shards: list[Path], role: int) -> Iterator[Triplet]:
        rounds = 0
        while shards:
            order = np.random.default_rng([self.seed, self.epoch, self.rank, role, rounds]).permutation(len(shards))
            found = 0
            for index in order:
                self._record(role, shards[index])
                for sample in TarSamples(shards[index]):
                    parsed = self.reader.read(sample)
                    if parsed is not None and not is_heldout(parsed[1], self.share):
                        found += 1
                        yield parsed[0]
            if not found:
                names = ", ".join(p.name for p in shards)
                raise DataError(f"shards {names} hold no usable training samples (skipped: {dict(self.reader.skipped)})")
            rounds += 1

    def _shuffled(self, triplets: Iterator[Triplet], role: int, size: int) -> Iterator[Triplet]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, role, 1 << 20])
        buffer: list[Triplet] = []
        for triplet in triplets:
            buffer.append(triplet)
            if len(buffer) >= size:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    def _pixels(self, image: bytes) -> torch.Tensor | None:
        try:
            return load_image(image, self.resolution)
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
            # NOTE: with data loader workers this counter lives in each worker process, so only the warnings
            # below report it. The main process does not sum the workers' counts.
            self.reader.skipped["unreadable image"] += 1
            if sum(self.reader.skipped.values()) in (1, 10, 100, 1000):
                logger.warning("skipped unusable training samples so far: %s", dict(self.reader.skipped))
            return None

    def _record(self, role: int, shard: Path) -> None:
        if self.trace is None:
            return
        with self.trace.open("a", encoding="utf-8") as handle:
            handle.write(f"{self.epoch}\t{self.rank}\t{role}\t{shard.name}\n")


@dataclass
class ShardStream:
    """A shard set opened for training: held-out triplets, a caption sample and per-epoch loaders."""

    shards: ShardSet
    reader: SampleReader
    share: float
    heldout: list[Triplet]
    captions: list[tuple[str, str]]

    def train_samples(self) -> int:
        """Return the expected number of training samples: all samples less the held-out share."""
        return int(sum(self.shards.counts) * (1 - self.share))

    def batches(self, resolution: int, seed: int, epoch: int, rank: int, world: int, batch_size: int,
                skip_batches: int, num_workers: int, prefetch_factor: int, trace: Path | None) -> Iterator[dict]:
        """Yield the rest of this process's batches of ``epoch``; every process gets the same number."""
        per_epoch = self.train_samples() // world // batch_size
        if per_epoch < 1:
            raise DataError(f"{self.shards.folder} has about {self.train_samples()} training samples, fewer than one "
                            f"batch of {batch_size} per process for {world} processes; add data or lower "
                            "train.batch_size")
        dataset = ShardTriplets(self.shards, self.reader, self.share, resolution, seed, epoch, rank, world,
                                skip_batches, batch_size, trace)
        assigned = len(dataset.process_shards())
        if assigned == 0:
            raise DataError(f"{self.shards.folder} has {len(self.shards.shards)} shards, fewer than the {world} "
                            "processes, so some would read nothing; prepare it with a smaller --shard-size")
        workers = min(num_workers, assigned)  # a worker without a shard would end the round-robin order early
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, drop_last=True,
                            pin_memory=torch.cuda.is_available(), prefetch_factor=prefetch_factor if workers else None)
        yield from islice(loader, max(per_epoch - skip_batches, 0))


def open_shard_stream(folder: Path, fields: TripletFields, normalize, heldout: int | float,
                      heldout_max: int) -> ShardStream:
    """Open a shard folder for training and read its held-out triplets and a sample of its captions."""
    shards = open_shard_set(folder)
    if not shards.shards:
        raise DataError(f"{folder} has no non-empty *.tar shards; write them with `polyiap prepare`")
    share = heldout_share(shards, heldout)
    reader = SampleReader(fields, normalize)
    heldout_triplets, captions = scan(shards, reader, share, heldout_max)
    if not captions:
        raise DataError(f"{folder}: no usable training triplets with the fields {fields.english!r} and "
                        f"{fields.target!r} (skipped: {dict(reader.skipped) or 'none'}); set data.english_field "
                        "and data.target_field to the shard's caption names")
    if reader.skipped:
        logger.warning("%s: skipped unusable samples: %s", folder, dict(reader.skipped))
    logger.info("%s: %d shards, %d samples; held-out share %.3g of the images (%d held-out triplets read)",
                folder, len(shards.shards), sum(shards.counts), share, len(heldout_triplets))
    return ShardStream(shards, SampleReader(fields, normalize), share, heldout_triplets, captions)
