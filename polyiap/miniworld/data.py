"""Miniature-world triplet files: rendered scenes with captions in every language, and the miniworld:// source.

A recipe's ``data.source`` may be ``miniworld://train?count=3000&seed=0`` (or ``miniworld://held-out?...``
for the held-out attribute combinations). The dataset is rendered once into the polyiap cache folder and
the source is replaced by the path of its ``triplets.jsonl``, which the usual triplet reader reads.
"""

import json
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from polyiap.errors import DataError
from polyiap.miniworld.captions import LANGUAGES, captions
from polyiap.miniworld.scenes import render, sample_scenes

SCHEME = "miniworld://"
_SPLITS = ("train", "held-out")
TRIPLETS = "triplets.jsonl"


def write_dataset(folder: Path, count: int, seed: int = 0, held_out: bool = False) -> Path:
    """Render ``count`` scenes with one caption per language into ``folder``; return its triplet file.

    The folder appears complete or not at all: it is written under a temporary name and renamed.
    """
    if count < 1:
        raise DataError(f"a miniature-world dataset needs at least one image, got count={count}")
    rng = np.random.default_rng([seed, int(held_out)])
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    rows = []
    for index, scene in enumerate(sample_scenes(count, rng, held_out)):
        name = f"images/{index:06d}.png"
        render(scene, rng).save(staging / name)
        rows.append({"image": name, **captions(scene, rng), **scene.as_dict()})
    (staging / TRIPLETS).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                                    encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return folder / TRIPLETS


def parse_source(source: str) -> tuple[str, int, int]:
    """Return (split, count, seed) of a ``miniworld://`` source."""
    parsed = urlparse(source)
    split = parsed.netloc + parsed.path.rstrip("/")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    unknown = set(query) - {"count", "seed"}
    if split not in _SPLITS or unknown:
        raise DataError(f"invalid miniature-world source {source!r}; expected "
                        "miniworld://train?count=N&seed=S or miniworld://held-out?count=N&seed=S")
    try:
        return split, int(query.get("count", 3000)), int(query.get("seed", 0))
    except ValueError:
        raise DataError(f"invalid count or seed in {source!r}; both must be integers") from None


def materialize(source: str, cache: Path) -> Path:
    """Return the triplet file of a ``miniworld://`` source, rendering it into ``cache`` the first time."""
    split, count, seed = parse_source(source)
    folder = cache / "miniworld" / f"{split}-{count}-seed{seed}"
    if (folder / TRIPLETS).is_file():
        return folder / TRIPLETS
    folder.parent.mkdir(parents=True, exist_ok=True)
    return write_dataset(folder, count, seed, held_out=split == "held-out")


__all__ = ["LANGUAGES", "SCHEME", "materialize", "parse_source", "write_dataset"]
