"""Evaluation suites: captions in the target language with their reference images.

A suite is declared in the language pack (``eval_suites``); its caption file and image folder are
paths in the pack or on the command line. A missing file, an empty suite or missing reference images
are errors, never a smaller suite.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from polyiap.errors import DataError
from polyiap.packs import LanguagePack, normalize_text, pack_path
from polyiap.packs.schema import EvalSuite

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class SuiteItem:
    """One caption of a suite; ``index`` fixes its seed and its image file name."""

    index: int
    caption: str
    english: str | None
    reference: Path


@dataclass
class Suite:
    name: str
    captions_file: Path
    images_dir: Path
    items: list[SuiteItem]
    published_size: int | None


def load_suite(pack: LanguagePack, name: str, captions: Path | None = None, images: Path | None = None,
               limit: int | None = None) -> Suite:
    """Load suite ``name`` of ``pack``; ``captions`` and ``images`` override the pack's paths."""
    if name not in pack.eval_suites:
        declared = ", ".join(sorted(pack.eval_suites)) or "none"
        raise DataError(f"language pack {pack.code!r} declares no evaluation suite {name!r} (declared: {declared}); "
                        f"add it under eval_suites in {pack_path(pack.code)}")
    spec = pack.eval_suites[name]
    captions_file = _suite_path(captions, spec.captions, pack, name, "captions")
    images_dir = _suite_path(images, spec.images, pack, name, "images") if (images or spec.images) \
        else captions_file.parent
    rows = _read_rows(captions_file, spec.format)
    items = _items(rows, spec, pack, captions_file, images_dir, limit)
    return Suite(name, captions_file, images_dir, items, spec.size)


def _suite_path(override: Path | None, declared: str | None, pack: LanguagePack, name: str, option: str) -> Path:
    if override is None and declared is None:
        notes = pack.eval_suites[name].notes
        raise DataError(f"suite {name!r} of pack {pack.code!r} has no {option} path; pass --{option} PATH"
                        + (f" ({notes})" if notes else ""))
    if override is None and declared.startswith("miniworld://"):
        return _rendered_suite(declared) if option == "captions" else _rendered_suite(declared).parent
    path = Path(override) if override is not None else pack_path(pack.code).parent / declared
    path = path.expanduser()
    exists = path.is_file() if option == "captions" else path.is_dir()
    if not exists:
        kind = "file" if option == "captions" else "folder"
        raise DataError(f"{option} {kind} of suite {name!r} not found: {path}; pass an existing {kind} with --{option}")
    return path


def _read_rows(path: Path, file_format: str) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if file_format == "aic-icc":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} is not valid JSON ({error}); the aic-icc format is the AI Challenger caption "
                            "file, a JSON list of objects") from None
        if not isinstance(rows, list):
            raise DataError(f"{path} is not an AI Challenger caption file (expected a JSON list of objects)")
        return rows
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg}); each line of a jsonl suite file must be "
                            "one JSON object") from None
    return rows


def _items(rows: list[dict], spec: EvalSuite, pack: LanguagePack, captions_file: Path, images_dir: Path,
           limit: int | None) -> list[SuiteItem]:
    finder = _ImageFinder(images_dir)
    items, seen = [], set()
    for line, row in enumerate(rows, start=1):
        image_name, caption = _field(row, spec.image_field, line, captions_file), _caption(row, spec, line, captions_file)
        if spec.one_per_image and image_name in seen:
            continue
        seen.add(image_name)
        caption = normalize_text(caption, pack.normalization)
        english = _caption_text(row.get(spec.english_field), spec.caption_index) if spec.english_field else None
        items.append(SuiteItem(len(items), caption, english, finder.find(image_name)))
        if limit is not None and len(items) == limit:
            break
    if not items:
        raise DataError(f"{captions_file} contains no captions; check the file and the suite's caption_field")
    finder.raise_missing()
    return items


def _field(row: dict, field: str, line: int, path: Path):
    if field not in row:
        raise DataError(f"{path} row {line} has no field {field!r} (fields: {', '.join(sorted(row))}); "
                        "rename the field in the file, or copy the language pack, set the suite's caption_field / "
                        "image_field there and pass the copy with --lang PATH")
    return row[field]


def _caption(row: dict, spec: EvalSuite, line: int, path: Path) -> str:
    caption = _caption_text(_field(row, spec.caption_field, line, path), spec.caption_index)
    if not caption or not caption.strip():
        raise DataError(f"{path} row {line} has an empty caption in {spec.caption_field!r}")
    return caption


def _caption_text(value, index: int) -> str | None:
    if isinstance(value, list):
        return value[index] if index < len(value) else None
    return value


class _ImageFinder:
    """Finds reference images by relative path, or by file name anywhere below the folder."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, Path] | None = None
        self.missing: list[str] = []

    def find(self, name: str) -> Path:
        direct = self.root / name
        if direct.is_file():
            return direct
        if self._by_name is None:
            self._by_name = {p.name: p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
        found = self._by_name.get(Path(name).name)
        if found is None:
            self.missing.append(name)
            return direct
        return found

    def raise_missing(self) -> None:
        if self.missing:
            raise DataError(f"{len(self.missing)} reference image(s) of the suite are not under {self.root}, "
                            f"for example {self.missing[0]!r}; pass the folder that holds them with --images")


def _rendered_suite(source: str) -> Path:
    """Render a miniature-world suite into the polyiap cache folder and return its caption file."""
    from polyiap.backbones.tiny import cache_root
    from polyiap.miniworld.data import materialize

    return materialize(source, cache_root())
