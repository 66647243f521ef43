"""English image-text sources for `polyiap prepare`: WebDataset folders, local HF datasets, JSONL/CSV.

A source is split into units that each become one output shard: one unit per input tar shard, or
``shard_size`` consecutive rows of a table. Units have stable names and order, so a resumed run
skips exactly the units it finished before.
"""

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from polyiap.data.shards import IMAGE_EXTENSIONS, TarSamples, find_shards
from polyiap.data.triplets import _read_rows
from polyiap.errors import DataError

logger = logging.getLogger(__name__)

ENGLISH_FIELDS = ("en", "caption", "text", "txt")  # tried in this order when --english-field is not given
SHARD_TRUNCATED = "source shard truncated or corrupt"


@dataclass
class SourceRecord:
    """One English example; ``problem`` names why it is unusable, if it already is at reading time."""

    key: str
    english: str | None = None
    image: bytes | None = None
    image_extension: str = "jpg"
    problem: str | None = None


@dataclass
class SourceUnit:
    """A slice of the source that becomes one output shard."""

    name: str
    read: Callable[[], Iterator[SourceRecord]]


@dataclass
class SourceFields:
    """Field names in the source; ``english`` None tries `ENGLISH_FIELDS` in order."""

    english: str | None = None
    image: str = "image"


def open_source(source: Path, fields: SourceFields, shard_size: int) -> tuple[str, list[SourceUnit]]:
    """Return the kind of ``source`` and its units, or raise `DataError` naming the layouts understood."""
    source = Path(source)
    if source.is_file() and source.suffix in (".jsonl", ".json", ".csv", ".tsv"):
        return "table", _table_units(source, fields, shard_size)
    if source.is_dir() and find_shards(source):
        return "webdataset", [_tar_unit(path, source, fields) for path in find_shards(source)]
    if source.is_dir() and _is_hf_dataset(source):
        return "hf-dataset", _hf_units(source, fields, shard_size)
    raise DataError(f"--source {str(source)!r}: not a WebDataset folder (*.tar shards), a local Hugging Face "
                    "dataset (a save_to_disk folder or *.parquet/*.arrow files) or a JSONL/CSV file; "
                    "check the path" + ("" if source.exists() else " (it does not exist)"))


def pick_english(values: dict, wanted: str | None) -> str | None:
    """Return the English caption from ``values`` (field name to text), or None when no field has one."""
    for name in ((wanted,) if wanted else ENGLISH_FIELDS):
        value = values.get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, list):  # several captions per image: the first is used
            value = value[0] if value else None
        if isinstance(value, str):
            return value
    return None


def _tar_unit(path: Path, root: Path, fields: SourceFields) -> SourceUnit:
    def read() -> Iterator[SourceRecord]:
        samples = TarSamples(path)
        for sample in samples:
            yield _record_from_sample(sample, fields)
        if samples.error:
            yield SourceRecord(key=f"{path.name}:end", problem=SHARD_TRUNCATED)

    return SourceUnit(str(path.relative_to(root)), read)


def _record_from_sample(sample: dict, fields: SourceFields) -> SourceRecord:
    values = {}
    if "json" in sample:
        try:
            values.update(json.loads(sample["json"]))
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
    values.update({extension.removesuffix(".txt"): data for extension, data in sample.items()
                   if extension.endswith("txt")})
    english = pick_english(values, fields.english)
    extension = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
    if extension is None:
        return SourceRecord(sample["__key__"], english, problem="missing image")
    return SourceRecord(sample["__key__"], english, sample[extension], "jpg" if extension == "jpeg" else extension)


def _table_units(path: Path, fields: SourceFields, shard_size: int) -> list[SourceUnit]:
    rows = _read_rows(path, "csv" if path.suffix in (".csv", ".tsv") else "jsonl")

    def reader(start: int) -> Callable[[], Iterator[SourceRecord]]:
        def read() -> Iterator[SourceRecord]:
            for index in range(start, min(start + shard_size, len(rows))):
                yield _record_from_row(rows[index], index, path.parent, fields)
        return read

    return [SourceUnit(f"rows {start}-{min(start + shard_size, len(rows)) - 1}", reader(start))
            for start in range(0, len(rows), shard_size)]


def _record_from_row(row: dict, index: int, root: Path, fields: SourceFields) -> SourceRecord:
    english = pick_english(row, fields.english)
    image = row.get(fields.image)
    if not image:
        return SourceRecord(str(index), english, problem="missing image")
    path = root / image
    try:
        data = path.read_bytes()
    except OSError:
        return SourceRecord(str(index), english, problem="missing image")
    return SourceRecord(str(index), english, data, _extension(path.suffix))


def _extension(suffix: str) -> str:
    suffix = suffix.lower().lstrip(".")
    return "jpg" if suffix in ("jpeg", "") else suffix


def _is_hf_dataset(folder: Path) -> bool:
    return ((folder / "dataset_info.json").is_file() or (folder / "state.json").is_file()
            or any(folder.glob("*.parquet")) or any(folder.glob("*.arrow")))


def load_hf_dataset(folder: Path):
    """Load a local Hugging Face dataset: a ``save_to_disk`` folder or a folder of parquet/arrow files."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{folder} is a Hugging Face dataset, which needs the `datasets` package; install it with "
                        "`pip install 'polyiap[data]'`") from None
    if (folder / "state.json").is_file() or (folder / "dataset_info.json").is_file() and \
            not any(folder.glob("*.parquet")):
        dataset = datasets.load_from_disk(str(folder))
    else:
        kind = "parquet" if any(folder.glob("*.parquet")) else "arrow"
        files = sorted(str(p) for p in folder.glob(f"*.{kind}"))
        dataset = datasets.load_dataset(kind, data_files=files, split="train")
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise DataError(f"{folder} contains the splits {list(dataset)} but no `train` split; save the split to "
                            "use as its own folder")
        dataset = dataset["train"]
    return dataset


def undecoded_images(dataset, column: str):
    """Return ``dataset`` with an ``Image`` column left as {bytes, path}, so broken images do not raise."""
    import datasets

    if column in dataset.features and isinstance(dataset.features[column], datasets.Image):
        return dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def image_from_value(value, root: Path) -> tuple[bytes | None, str]:
    """Return the image bytes and extension of an HF dataset value: {bytes, path}, raw bytes or a path."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"], _extension(Path(value.get("path") or "x.jpg").suffix)
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), "jpg"
    if isinstance(value, str) and value:
        path = root / value
        try:
            return path.read_bytes(), _extension(path.suffix)
        except OSError:
            return None, "jpg"
    return None, "jpg"


def _hf_units(folder: Path, fields: SourceFields, shard_size: int) -> list[SourceUnit]:
    dataset = undecoded_images(load_hf_dataset(folder), fields.image)
    if fields.image not in dataset.column_names:
        raise DataError(f"{folder}: no image column {fields.image!r} (columns: {', '.join(dataset.column_names)}); "
                        "pass --image-field")

    def reader(start: int) -> Callable[[], Iterator[SourceRecord]]:
        def read() -> Iterator[SourceRecord]:
            rows = dataset.select(range(start, min(start + shard_size, len(dataset))))
            for offset, row in enumerate(rows):
                english = pick_english(row, fields.english)
                data, extension = image_from_value(row.get(fields.image), folder)
                if data is None:
                    yield SourceRecord(str(start + offset), english, problem="missing image")
                else:
                    yield SourceRecord(str(start + offset), english, data, extension)
        return read

    return [SourceUnit(f"rows {start}-{min(start + shard_size, len(dataset)) - 1}", reader(start))
            for start in range(0, len(dataset), shard_size)]
