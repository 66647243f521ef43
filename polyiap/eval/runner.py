"""`polyiap eval`: one image per suite caption with fixed seeds, then FID and CLIP score.

Output folder::

    eval.json       the protocol this folder was started with; once images exist, a re-run must match it
    images/         00000.png ... one per caption; each PNG records its caption, prompt and seed
    reference/      the reference images, centre-cropped and resized to the generated size
    metrics.json    metric values, comparability and the full protocol
    report.html     metrics table and a grid of prompt/image pairs

Images are written to ``.partial/`` and renamed into place, so an interrupted run leaves only complete
images; a re-run keeps every image whose recorded caption, seed and size match and generates the rest.
"""

import json
import logging
import os
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from polyiap.errors import PolyiapError
from polyiap.eval.clip_score import ClipScorer
from polyiap.eval.judge import find_judge, judge_sha256, judged_agreement
from polyiap.eval.fid import InceptionWeights, compute_fid, find_inception_weights, require_torch_fidelity
from polyiap.eval.report import write_report
from polyiap.eval.suites import Suite, SuiteItem
from polyiap.eval.systems import System, settings_record

logger = logging.getLogger(__name__)

METRICS = ("fid", "clip_score", "judge")
PROTOCOL_FILE = "eval.json"
METRICS_FILE = "metrics.json"


@dataclass
class Scorers:
    """The scorers an evaluation uses, resolved before any image is generated."""

    inception: InceptionWeights | None = None
    clip: ClipScorer | None = None
    judge: Path | None = None  # a miniature-world judge folder

    @classmethod
    def resolve(cls, metrics: list[str], inception_path: Path | None, clip_source: str | None,
                judge: Path | None = None) -> "Scorers":
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown or not metrics:
            raise PolyiapError(f"--metrics {','.join(metrics)!r}: choose one or more of {', '.join(METRICS)}")
        scorers, problems = cls(), []
        if "fid" in metrics:
            try:
                scorers.inception = find_inception_weights(inception_path)
            except PolyiapError as error:
                problems.append(str(error))
        if "clip_score" in metrics:
            try:
                if not clip_source:
                    raise PolyiapError("CLIP score needs a Chinese CLIP model and the language pack names no "
                                       "clip_model; pass --clip-model PATH")
                scorers.clip = ClipScorer(clip_source)
            except PolyiapError as error:
                problems.append(str(error))
        if "judge" in metrics:
            try:
                scorers.judge = find_judge(judge)
            except PolyiapError as error:
                problems.append(str(error))
        if problems:
            raise PolyiapError(" | ".join(problems))
        return scorers

    def describe(self) -> dict:
        record = {}
        if self.inception:
            record["inception"] = {"path": str(self.inception.path), "sha256": self.inception.sha256,
                                   "official": self.inception.official}
        if self.clip:
            record["clip"] = {"source": self.clip.source, "path": str(self.clip.folder),
                              "sha256": self.clip.weights_sha256(), "random_init": self.clip.random_init}
        if self.judge:
            record["judge"] = {"path": str(self.judge), "sha256": judge_sha256(self.judge)}
        return record


@dataclass
class EvalRun:
    system: System
    suite: Suite
    output: Path
    scorers: Scorers
    seed: int = 0
    batch_size: int = 8
    report_images: int = 48
    on_progress: Callable[[int, int], None] = field(default=lambda done, total: None)

    def seeds(self, items: list[SuiteItem]) -> list[int]:
        return [self.seed + item.index for item in items]


def run_eval(run: EvalRun) -> dict:
    """Generate the missing images, prepare the references, score, and write metrics.json and report.html."""
    run.system.check_suite(run.suite.items)
    protocol = _protocol(run)
    _claim_output(run.output, protocol)
    prompts = _generate_missing(run)
    references = _prepare_references(run)
    images = [_image_path(run.output, item) for item in run.suite.items]
    result = _score(run, images, references)
    record = {**result, **protocol, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "scorers": run.scorers.describe(), "versions": _versions()}
    record["comparable_to_published"], record["not_comparable_because"] = _comparability(run)
    _write_json(run.output / METRICS_FILE, {k: v for k, v in record.items() if k != "per_image_clip_score"})
    scores = result.get("per_image_clip_score")
    by_index = {item.index: score for item, score in zip(run.suite.items, scores)} if scores else None
    write_report(run.output, record, run.suite.items[:run.report_images], prompts, by_index)
    return record


def _protocol(run: EvalRun) -> dict:
    suite = run.suite
    return {
        "model": run.system.describe(),
        "suite": {"name": suite.name, "captions": str(suite.captions_file.resolve()),
                  "images": str(suite.images_dir.resolve()), "count": len(suite.items),
                  "published_size": suite.published_size},
        "sampling": {**settings_record(run.system), "negative_prompt": "", "seed": run.seed,
                     "seeds": "seed + caption index", "images_per_caption": 1},
    }


def _claim_output(output: Path, protocol: dict) -> None:
    """Record the protocol in a new folder, or check that a re-run matches the one recorded."""
    path = output / PROTOCOL_FILE
    expected = {k: v for k, v in protocol.items() if k != "suite"} | {"suite": protocol["suite"]["name"]}
    has_images = any((output / "images").glob("*.png"))
    if path.is_file() and has_images:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        changes = [f"{key}: {old!r} -> {new!r}" for key, (old, new) in differences(recorded, expected).items()]
        if changes:
            raise PolyiapError(f"{output} contains images of another evaluation protocol ({'; '.join(changes)}); "
                               "they cannot be reused: pass a new --output folder")
        return
    if path.is_file():  # started, but no image written yet: the new protocol replaces it
        _write_json(path, expected)
        return
    if output.is_dir() and any(output.iterdir()):
        raise PolyiapError(f"{output} is not empty and contains no {PROTOCOL_FILE}; pass a new or empty --output folder")
    output.mkdir(parents=True, exist_ok=True)
    _write_json(path, expected)


def differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """Return {dotted key: (old value, new value)} for every leaf on which two nested dicts differ."""
    result = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            result.update(differences(a, b, f"{prefix}{key}."))
        elif a != b:
            result[f"{prefix}{key}"] = (a, b)
    return result


def _image_path(output: Path, item: SuiteItem) -> Path:
    return output / "images" / f"{item.index:05d}.png"


def _recorded(path: Path) -> dict | None:
    """Return the text fields of a complete generated image, or None when it is absent or damaged."""
    try:
        with Image.open(path) as image:
            image.load()
            return {**image.text, "size": image.size}
    except (OSError, SyntaxError, ValueError):
        return None


def _done_prompt(run: EvalRun, item: SuiteItem, seed: int) -> str | None:
    """Return the recorded prompt of a complete image of ``item`` with ``seed``, or None to generate it."""
    recorded = _recorded(_image_path(run.output, item))
    size = (run.system.resolution, run.system.resolution)
    if recorded and recorded.get("caption") == item.caption and recorded.get("seed") == str(seed) \
            and recorded["size"] == size:
        return recorded.get("prompt", "")
    return None


def _generate_missing(run: EvalRun) -> dict[int, str]:
    """Generate every image not yet written; return the prompt given to the model per caption index."""
    items, seeds = run.suite.items, run.seeds(run.suite.items)
    prompts_by_index: dict[int, str] = {}
    todo = []
    for item, seed in zip(items, seeds):
        prompt = _done_prompt(run, item, seed)
        if prompt is None:
            todo.append((item, seed))
        else:
            prompts_by_index[item.index] = prompt
    others = len(list((run.output / "images").glob("*.png"))) - len(prompts_by_index)
    if others > 0:
        logger.info("%d image(s) in %s belong to captions outside this evaluation (another --limit); "
                    "the metrics use the %d captions of this run", others, run.output / "images", len(items))
    done = len(prompts_by_index)
    run.on_progress(done, len(items))
    partial = run.output / ".partial"
    partial.mkdir(exist_ok=True)
    for start in range(0, len(todo), run.batch_size):
        batch = todo[start:start + run.batch_size]
        prompts = run.system.prompts([item for item, _ in batch])
        images = run.system.generate(prompts, [seed for _, seed in batch])
        for (item, seed), prompt, image in zip(batch, prompts, images):
            _save_generated(image, partial, _image_path(run.output, item), item.caption, prompt, seed)
            prompts_by_index[item.index] = prompt
        done += len(batch)
        run.on_progress(done, len(items))
    return prompts_by_index


def _save_generated(image: Image.Image, partial: Path, path: Path, caption: str, prompt: str, seed: int) -> None:
    info = PngInfo()
    for key, value in (("caption", caption), ("prompt", prompt), ("seed", str(seed))):
        info.add_itxt(key, value)
    temporary = partial / path.name
    image.save(temporary, pnginfo=info)
    path.parent.mkdir(exist_ok=True)
    os.replace(temporary, path)


def _prepare_references(run: EvalRun) -> list[Path]:
    """Centre-crop and resize each reference image to the generated size, once."""
    size = run.system.resolution
    folder = run.output / "reference"
    folder.mkdir(exist_ok=True)
    paths = []
    for item in run.suite.items:
        path = folder / f"{item.index:05d}.png"
        recorded = _recorded(path)
        if not recorded or recorded["size"] != (size, size) or recorded.get("source") != str(item.reference):
            _write_reference(item.reference, path, size, run.output / ".partial")
        paths.append(path)
    return paths


def _write_reference(source: Path, path: Path, size: int, partial: Path) -> None:
    try:
        with Image.open(source) as image:
            square = ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.BICUBIC)
    except OSError as error:
        raise PolyiapError(f"reference image {source} cannot be read ({error}); replace or remove it") from None
    info = PngInfo()
    info.add_itxt("source", str(source))
    temporary = partial / f"reference-{path.name}"
    square.save(temporary, pnginfo=info)
    os.replace(temporary, path)


def _score(run: EvalRun, images: list[Path], references: list[Path]) -> dict:
    metrics: dict[str, float] = {}
    result: dict = {"metrics": metrics}
    if run.scorers.inception:
        metrics["fid"] = compute_fid(images, references, run.scorers.inception)
    if run.scorers.clip:
        scores = run.scorers.clip.scores(images, [item.caption for item in run.suite.items])
        metrics["clip_score"] = statistics.fmean(scores)
        result["per_image_clip_score"] = scores
    if run.scorers.judge:
        metrics.update(judged_agreement(run.scorers.judge, images, references))
    return result


def _comparability(run: EvalRun) -> tuple[bool, list[str]]:
    reasons = []
    inception, clip = run.scorers.inception, run.scorers.clip
    if inception and not inception.official:
        reasons.append(f"FID uses Inception weights that are not torch-fidelity's official file "
                       f"(sha256 {inception.sha256[:12]}...)")
    if clip and clip.random_init:
        reasons.append("CLIP score uses a randomly initialised Chinese CLIP (polyiap eval random-scorers)")
    published = run.suite.published_size
    if published and len(run.suite.items) != published:
        reasons.append(f"{len(run.suite.items)} captions, while the published protocol uses {published}")
    return not reasons, reasons


def _versions() -> dict:
    versions = {}
    for package in ("polyiap", "torch", "diffusers", "transformers", "torch-fidelity"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _write_json(path: Path, record: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
