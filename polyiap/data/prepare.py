"""`polyiap prepare`: English image-text data to WebDataset shards of (image, English, target) triplets.

Each source unit becomes one output shard ``NNNNNN.tar`` with, per sample, the image as it was
(``jpg``/``png``/``webp``), ``en.txt``, ``<lang>.txt`` and a ``json`` with both captions and the
image's SHA-1. Beside each shard, ``NNNNNN.stats.json`` records what was kept and dropped. A shard
counts as finished only when both files exist, so a killed run redoes at most the shard it was writing.
``manifest.json`` sums the stats when every unit is done.
"""

import hashlib
import io
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image

from polyiap.data.shards import ShardWriter, write_atomic
from polyiap.data.sources import SHARD_TRUNCATED, SourceFields, SourceRecord, SourceUnit, open_source
from polyiap.errors import DataError
from polyiap.packs import LanguagePack, TranslationModel, normalize_text, pack_path

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SETTINGS = "prepare.json"
FORMAT = 1


@dataclass
class PrepareOptions:
    """Settings of `prepare`: reading, translation and filtering."""

    shard_size: int = 1000  # rows per output shard for JSONL/CSV and HF sources
    batch_size: int = 32
    num_beams: int = 4
    max_new_tokens: int = 128
    max_chars: int = 300  # longer English captions or translations are dropped
    device: str = "cpu"
    fields: SourceFields = field(default_factory=SourceFields)


class PrepareProgress(Protocol):
    def on_start(self, total_units: int, finished_units: int) -> None: ...
    def on_unit(self, name: str, kept: int, dropped: int) -> None: ...
    def on_end(self) -> None: ...


class _Silent:
    def on_start(self, total_units: int, finished_units: int) -> None:
        pass

    def on_unit(self, name: str, kept: int, dropped: int) -> None:
        pass

    def on_end(self) -> None:
        pass


@dataclass
class _Candidate:
    record: SourceRecord
    image_sha1: str
    english: str


def prepare(pack: LanguagePack, source: Path, output: Path, options: PrepareOptions,
            translation: TranslationModel | None = None, progress: PrepareProgress | None = None,
            pack_file: str | None = None) -> dict:
    """Translate and filter ``source`` into shards under ``output``; return the manifest written there.

    ``pack_file`` is the pack's YAML file, named in errors; by default the shipped pack of its code.
    """
    progress = progress or _Silent()
    pack_file = pack_file or str(pack_path(pack.code))
    spec = translation or pack.translation_model
    if spec is None:
        raise DataError(f"language pack {pack.code!r} names no translation_model; add one to {pack_file} "
                        "or pass --translation-model")
    kind, units = open_source(source, options.fields, options.shard_size)
    output.mkdir(parents=True, exist_ok=True)
    settings = _settings(pack, source, kind, spec, options)
    started = any(_is_finished(output, index) for index in range(len(units)))
    _check_settings(output, settings, started)

    finished = {index for index in range(len(units)) if _is_finished(output, index)}
    progress.on_start(len(units), len(finished))
    seen = _seen_keys(output, finished)
    translator = None
    for index, unit in enumerate(units):
        if index in finished:
            continue
        if translator is None:
            translator = _load_translator(spec, pack_file, options)
        stats = _prepare_unit(index, unit, output, pack, translator, options, seen)
        progress.on_unit(unit.name, stats["kept"], sum(stats["dropped"].values()))
    manifest = _write_manifest(output, settings, len(units))
    progress.on_end()
    return manifest


def _load_translator(spec: TranslationModel, pack_file: str, options: PrepareOptions):
    from polyiap.data.translate import Translator

    return Translator(spec, pack_file, options.batch_size, options.num_beams,
                      options.max_new_tokens, options.device)


def _settings(pack: LanguagePack, source: Path, kind: str, spec: TranslationModel, options: PrepareOptions) -> dict:
    return {"format": FORMAT, "language": pack.code, "source": str(Path(source).resolve()), "source_kind": kind,
            "translation_model": spec.model_dump(), "normalization": pack.normalization.model_dump(),
            "options": {k: v for k, v in asdict(options).items() if k not in ("device", "batch_size")}}


def _check_settings(output: Path, settings: dict, started: bool) -> None:
    """Reject resuming into a folder prepared with other settings, whose shards would mix two datasets.

    Before the first shard is finished nothing can mix, so new settings replace the saved ones.
    """
    path = output / SETTINGS
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != settings and not started:
            write_atomic(path, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
            return
        if saved != settings:
            changed = sorted(key for key in settings if saved.get(key) != settings[key])
            raise DataError(f"{output} was prepared with other settings (different {', '.join(changed)}); rerun with "
                            f"the same options to resume, or choose a new --output folder")
        return
    if any(output.iterdir()):
        raise DataError(f"--output {output} is not empty and was not written by polyiap prepare; choose an empty "
                        "or new folder")
    write_atomic(path, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")


def shard_name(index: int) -> str:
    return f"{index:06d}.tar"


def _stats_path(output: Path, index: int) -> Path:
    return output / f"{index:06d}.stats.json"


def _is_finished(output: Path, index: int) -> bool:
    return (output / shard_name(index)).is_file() and _stats_path(output, index).is_file()


def _seen_keys(output: Path, finished: set[int]) -> set[str]:
    seen: set[str] = set()
    for index in finished:
        seen.update(json.loads(_stats_path(output, index).read_text(encoding="utf-8"))["dedup_keys"])
    return seen


def _prepare_unit(index: int, unit: SourceUnit, output: Path, pack: LanguagePack, translator,
                  options: PrepareOptions, seen: set[str]) -> dict:
    dropped, candidates, read = Counter(), [], 0
    for record in unit.read():
        if record.problem != SHARD_TRUNCATED:
            read += 1
        reason = _check_record(record, options.max_chars)
        if reason:
            dropped[reason] += 1
            continue
        candidates.append(_Candidate(record, hashlib.sha1(record.image).hexdigest(), " ".join(record.english.split())))

    translations = translator.translate([c.english for c in candidates]) if candidates else []
    writer = ShardWriter(output / shard_name(index))
    kept_keys, images = [], set()
    try:
        for number, (candidate, raw) in enumerate(zip(candidates, translations)):
            target = normalize_text(raw, pack.normalization)
            reason = _check_translation(candidate.english, target, options.max_chars)
            dedup_key = hashlib.sha1(f"{candidate.image_sha1}\n{target}".encode()).hexdigest()[:16]
            if reason is None and dedup_key in seen:
                reason = "duplicate (same image and translation)"
            if reason:
                dropped[reason] += 1
                continue
            seen.add(dedup_key)
            kept_keys.append(dedup_key)
            images.add(candidate.image_sha1)
            writer.write(f"{index:06d}-{number:06d}", _members(candidate, target, pack.code))
        stats = {"shard": shard_name(index), "source_unit": unit.name, "read": read, "kept": writer.count,
                 "images": len(images), "dropped": dict(dropped), "dedup_keys": kept_keys}
        writer.close()
    except BaseException:
        writer.abort()
        raise
    write_atomic(_stats_path(output, index), json.dumps(stats) + "\n")
    if dropped:
        logger.info("%s: kept %d of %d, dropped %s", unit.name, writer.count, read, dict(dropped))
    return stats


def _members(candidate: _Candidate, target: str, code: str) -> dict[str, bytes]:
    record = candidate.record
    metadata = {"en": candidate.english, code: target, "image_sha1": candidate.image_sha1, "source_key": record.key}
    return {record.image_extension: record.image, "en.txt": candidate.english.encode(),
            f"{code}.txt": target.encode(), "json": json.dumps(metadata, ensure_ascii=False).encode()}


def _check_record(record: SourceRecord, max_chars: int) -> str | None:
    """Return why a source record cannot be used, or None."""
    if record.problem:
        return record.problem
    if record.english is None:
        return "missing English caption"
    if not record.english.strip():
        return "empty English caption"
    if len(record.english) > max_chars:
        return "English caption too long"
    try:
        with Image.open(io.BytesIO(record.image)) as image:
            image.load()
            if min(image.size) < 1:
                return "unreadable image"
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return "unreadable image"
    return None


def _check_translation(english: str, target: str, max_chars: int) -> str | None:
    """Return why a translation is dropped, or None."""
    if not target.strip():
        return "empty translation"
    if len(target) > max_chars:
        return "translation too long"
    if _letters(target) == _letters(english):
        return "untranslated (same as the English)"
    return None


def _letters(text: str) -> str:
    return "".join(char for char in text.casefold() if char.isalnum())


def _write_manifest(output: Path, settings: dict, total_units: int) -> dict:
    shards, dropped, kept, read, images = [], Counter(), 0, 0, 0
    for index in range(total_units):
        stats = json.loads(_stats_path(output, index).read_text(encoding="utf-8"))
        shards.append({"file": stats["shard"], "samples": stats["kept"], "images": stats["images"],
                       "source_unit": stats["source_unit"]})
        dropped.update(stats["dropped"])
        kept, read, images = kept + stats["kept"], read + stats["read"], images + stats["images"]
    manifest = {**settings, "samples": kept, "images": images, "read": read,
                "dropped": dict(sorted(dropped.items())), "shards": shards}
    write_atomic(output / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
