"""Triplet sources: (image, English caption, target caption) rows from JSONL or CSV files."""

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyiap.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Triplet:
    """One training example; ``image`` is an absolute path, or the encoded image read from a shard."""

    image: Path | bytes
    english: str
    target: str


@dataclass
class TripletFields:
    """Column names of a triplet file."""

    image: str = "image"
    english: str = "en"
    target: str = "zh"


def read_triplets(source: str | Path, fields: TripletFields, file_format: str = "auto",
                  normalize=None) -> tuple[list[Triplet], Counter]:
    """Read triplets; image paths are relative to the file. Returns the triplets and skip counts by reason.

    Rows without a target caption (the file may hold several languages) or whose image file is missing
    are skipped and counted.
    """
    path = Path(source)
    if path.is_dir() or not path.is_file():
        raise DataError(f"triplet file {str(path)!r} not found; pass a JSONL or CSV file with "
                        f"{fields.image!r}, {fields.english!r} and {fields.target!r} columns via --data")
    file_format = _detect_format(path) if file_format == "auto" else file_format
    rows = _read_rows(path, file_format)

    triplets, skipped, first_missing = [], Counter(), None
    for row in rows:
        image, english, target = (row.get(fields.image), row.get(fields.english), row.get(fields.target))
        if not image:
            skipped["no image field"] += 1
            continue
        if english is None or target is None:
            skipped[f"no {fields.english!r} or {fields.target!r} caption"] += 1
            continue
        image_path = (path.parent / image).resolve()
        if not image_path.is_file():
            skipped["image file not found"] += 1
            first_missing = first_missing or image_path
            continue
        target = normalize(target) if normalize else target
        triplets.append(Triplet(image_path, english.strip(), target))
    if not triplets and skipped and set(skipped) == {"image file not found"}:
        raise DataError(f"{path}: none of the {sum(skipped.values())} image files exists, for example "
                        f"{str(first_missing)!r}; image paths are read relative to the data file's folder "
                        f"({path.parent}), so put the file beside its images or make the paths relative to it")
    if not triplets:
        found = ", ".join(repr(column) for column in rows[0]) if rows else "none (the file is empty)"
        raise DataError(f"{path} has no usable triplets (skipped: {dict(skipped) or 'none'}); the file has the "
                        f"columns {found} but the recipe reads {fields.image!r}, {fields.english!r} and "
                        f"{fields.target!r}; rename them or set data.image_field, data.english_field and "
                        "data.target_field")
    if skipped:
        logger.warning("%s: skipped %d rows: %s", path.name, sum(skipped.values()), dict(skipped))
    return triplets, skipped


def _detect_format(path: Path) -> str:
    if path.suffix in (".jsonl", ".json"):
        return "jsonl"
    if path.suffix in (".csv", ".tsv"):
        return "csv"
    raise DataError(f"cannot tell the format of {path.name!r} from its suffix; name it .jsonl or .csv, "
                    "or set data.format")


def _read_rows(path: Path, file_format: str) -> list[dict]:
    if file_format == "csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            dialect = "excel-tab" if path.suffix == ".tsv" else "excel"
            return list(csv.DictReader(handle, dialect=dialect))
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg}); each line must be one JSON object") \
                from error
    return rows


def split_by_image(triplets: list[Triplet], heldout: int | float, seed: int) -> tuple[list[Triplet], list[Triplet]]:
    """Split into (train, held-out) so that no image has captions on both sides.

    ``heldout`` below 1 is a share of the images, 1 or more a count of images.
    """
    images = sorted({t.image for t in triplets})
    count = int(round(heldout * len(images))) if heldout < 1 else int(heldout)
    if count >= len(images):
        raise DataError(f"data.heldout_images={heldout} sets aside {count} of {len(images)} images, leaving none "
                        "to train on; lower it")
    order = np.random.default_rng(seed).permutation(len(images))
    heldout_images = {images[i] for i in order[:count]}
    train = [t for t in triplets if t.image not in heldout_images]
    heldout_triplets = [t for t in triplets if t.image in heldout_images]
    return train, heldout_triplets
