"""A standard diffusers pipeline folder from a trained student, written per backbone family.

The base model's components other than the text encoder and tokenizer (UNet, VAE, scheduler, safety
checker, ...) are copied file by file, so they stay byte-identical and everything made for the base
model keeps working with the exported folder.
"""

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import transformers

from polyiap.backbones import Backbone
from polyiap.encoders import StudentEncoder
from polyiap.errors import PolyiapError
from polyiap.export.text_encoder import ExportError, stock_text_encoder, write_tokenizer
from polyiap.generate import SamplerSettings
from polyiap.registry import Registry

logger = logging.getLogger(__name__)

EXPORT_RECORD = "polyiap_export.json"

# family -> function(student, backbone, staging folder) -> ExportedLayout.
PIPELINE_EXPORTERS: Registry = Registry("pipeline export")


@dataclass
class ExportedLayout:
    """A family exporter's result besides the files: notes for the log and the options the folder needs.

    Args:
        notes: warnings and facts the export logs and records.
        load_options: keyword arguments that ``DiffusionPipeline.from_pretrained`` needs for the folder.
        call_options: keyword arguments that a pipeline call needs to give `polyiap generate`'s images.
    """

    notes: list[str] = field(default_factory=list)
    load_options: dict = field(default_factory=dict)
    call_options: dict = field(default_factory=dict)


def export_pipeline(student: StudentEncoder, backbone: Backbone, settings: SamplerSettings, output: Path,
                    force: bool = False, source: Path | None = None,
                    empty_prompt_rate: float | None = None) -> list[str]:
    """Write the pipeline folder ``output`` and return the notes that the export logged.

    ``source`` (the run folder) and ``empty_prompt_rate`` (its recipe's value) are recorded and checked.

    The folder is built under a temporary name next to ``output`` and renamed into place, so an
    interrupted export leaves no partial folder. A non-empty ``output`` is replaced only with ``force``.
    """
    output = Path(output)
    check_output(output, force)
    exporter = PIPELINE_EXPORTERS.get(backbone.family)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.exporting-", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes the folder private; the export is an ordinary folder
    try:
        layout = exporter(student, backbone, staging)
        notes = unconditional_notes(student, empty_prompt_rate) + sampler_notes(settings, backbone) + layout.notes
        record = {"source": str(source) if source else None, "backbone": student.metadata.get("backbone"),
                  "language": student.metadata.get("language"), "max_length": student.max_length,
                  "sampler": asdict(settings),
                  "scheduler": run_scheduler(settings), "load_options": layout.load_options,
                  "call_options": layout.call_options, "notes": notes}
        (staging / EXPORT_RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        replace_folder(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for note in notes:
        logger.warning(note)
    return notes


def check_output(output: Path, force: bool) -> None:
    """Raise when ``output`` is a file, or a non-empty folder and ``force`` is not set."""
    if output.exists() and not output.is_dir():
        raise PolyiapError(f"--output {str(output)!r} is a file; name a folder")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise PolyiapError(f"--output {str(output)!r} is not empty; choose another folder or pass --force to "
                           "replace it")


def replace_folder(staging: Path, output: Path) -> None:
    """Move ``staging`` to ``output``, replacing an existing ``output`` only after the new folder is complete."""
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.replaced-", dir=output.parent))
        os.replace(output, old / output.name)
        os.replace(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, output)


def unconditional_notes(student: StudentEncoder, empty_prompt_rate: float | None) -> list[str]:
    """Return a warning when the run relied on the teacher's unconditional embedding.

    A stock pipeline encodes the empty and the negative prompt with the exported text encoder, so a
    student that never learned the empty prompt gives other images than `polyiap generate`.
    """
    reasons = []
    if student.metadata.get("unconditional", "student") == "teacher":
        reasons.append("its recipe set samples.unconditional: teacher")
    if empty_prompt_rate == 0:
        reasons.append("it was trained with data.empty_prompt_rate 0, so it never learned the empty prompt")
    if not reasons:
        return []
    return [f"this run relied on the teacher's unconditional embedding ({'; '.join(reasons)}); a stock pipeline "
            "encodes the empty and negative prompts with the exported text encoder, so its images differ from "
            "`polyiap generate` and guidance may be poor. Retrain with data.empty_prompt_rate > 0 and "
            "samples.unconditional: student"]


def run_scheduler(settings: SamplerSettings) -> dict:
    """Return the scheduler class `polyiap generate` samples with and the config values it sets on the base's."""
    from polyiap.backbones.samplers import SAMPLER_OVERRIDES, SAMPLERS

    return {"class": SAMPLERS.get(settings.scheduler), "config": SAMPLER_OVERRIDES.get(settings.scheduler, {})}


def sampler_notes(settings: SamplerSettings, backbone: Backbone) -> list[str]:
    """Return a note when the run samples with another scheduler, or other settings, than the base model's own."""
    base_config = getattr(backbone, "scheduler_config", {})
    base_class = base_config.get("_class_name")
    scheduler = run_scheduler(settings)
    changed = {key: value for key, value in scheduler["config"].items() if base_config.get(key) != value}
    if base_class and (base_class != scheduler["class"] or changed):
        arguments = "".join(f", {key}={value!r}" for key, value in changed.items())
        return [f"the run samples with {scheduler['class']} ({settings.scheduler}) and the base model's scheduler is "
                f"{base_class}; the exported folder keeps the base scheduler, so set `pipe.scheduler = "
                f"{scheduler['class']}.from_config(pipe.scheduler.config{arguments})` to match `polyiap generate`"]
    return []


def copy_components(base: Path, folder: Path, replaced: set[str]) -> dict:
    """Copy every component folder of the diffusers folder ``base`` except ``replaced``; return its model index."""
    index = json.loads((base / "model_index.json").read_text(encoding="utf-8"))
    for name, value in index.items():
        if name.startswith("_") or name in replaced or not isinstance(value, list) or None in value:
            continue
        shutil.copytree(base / name, folder / name, symlinks=False, copy_function=shutil.copy2)
    return index


def tokenizer_class_name(tokenizer) -> str:
    """Return the tokenizer's transformers class name, preferring the ``...Fast`` name that both 4.x and 5.x know."""
    name = type(tokenizer).__name__
    return name if name.endswith("Fast") or not hasattr(transformers, f"{name}Fast") else f"{name}Fast"


def write_student_components(student: StudentEncoder, folder: Path) -> list[str]:
    """Write ``text_encoder/`` and ``tokenizer/``; return the class names for the model index and the notes."""
    encoder = stock_text_encoder(student)
    encoder.save_pretrained(folder / "text_encoder")
    tokenizer_class, notes = write_tokenizer_component(student, folder / "tokenizer")
    return [type(encoder).__name__, tokenizer_class, *notes]


def write_tokenizer_component(student: StudentEncoder, folder: Path) -> tuple[str, list[str]]:
    """Write the student's tokenizer to ``folder``; return its class name for the model index and the notes."""
    from transformers import AutoTokenizer

    if write_tokenizer(student, folder):
        return "PreTrainedTokenizerFast", []
    note = ("the student's tokenizer is not a fast tokenizer, so the exported tokenizer cannot apply the language "
            "pack's normalisation; normalise prompts before passing them to the pipeline")
    return tokenizer_class_name(AutoTokenizer.from_pretrained(folder)), [note]


def check_context_width(student: StudentEncoder, backbone: Backbone) -> None:
    """Raise `ExportError` when the student's output width is not the backbone's context width."""
    if student.context_dim != backbone.context_dim:
        raise ExportError(f"the student's output width {student.context_dim} differs from the backbone's context "
                          f"width {backbone.context_dim}; export the student with the backbone it was trained for")


def write_model_index(folder: Path, index: dict) -> None:
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def export_stable_diffusion(student: StudentEncoder, backbone: Backbone, folder: Path) -> ExportedLayout:
    """Write an SD 1.x / 2.x pipeline: the base components plus the student as ``text_encoder``."""
    check_context_width(student, backbone)
    index = copy_components(Path(backbone.source), folder, {"text_encoder", "tokenizer"})
    encoder_class, tokenizer_class, *notes = write_student_components(student, folder)
    index["text_encoder"] = ["transformers", encoder_class]
    index["tokenizer"] = ["transformers", tokenizer_class]
    write_model_index(folder, index)
    return ExportedLayout(notes)


# SD 2.x folders have the SD 1.x layout and pipeline class. The scheduler (v-prediction for the 768-pixel
# models) is copied with the other base components, so its prediction type stays as it was.
for _family in ("sd1", "tiny", "sd2", "tiny-sd2"):
    PIPELINE_EXPORTERS.register(_family)(export_stable_diffusion)
