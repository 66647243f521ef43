"""The text-to-image systems an evaluation can measure, behind one interface.

* a trained student (run or student folder) with its frozen backbone;
* ``teacher``: the backbone itself with the suite's English captions (the ceiling);
* ``translate``: the caption machine-translated to English, then the stock backbone ("SD + Translation");
* any diffusers text-to-image pipeline folder (Taiyi, AltDiffusion and the like), given the captions as they are.
"""

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, replace
from pathlib import Path

import torch
from PIL import Image

from polyiap.backbones import load_backbone
from polyiap.backbones.samplers import make_sampler
from polyiap.encoders.student import STUDENT_CONFIG
from polyiap.errors import DataError, PolyiapError
from polyiap.eval.suites import SuiteItem
from polyiap.generate import PromptEncoder, SamplerSettings, load_student_and_backbone, run_pipeline
from polyiap.hub import resolve_model_source
from polyiap.recipes.schema import Recipe


class System(ABC):
    """A model that turns a batch of suite captions into images, one seed per caption."""

    settings: SamplerSettings
    resolution: int

    def prompts(self, items: list[SuiteItem]) -> list[str]:
        """Return the text the model is given for each item (the target-language caption by default)."""
        return [item.caption for item in items]

    @abstractmethod
    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        """Return one image per prompt, each from the generator seeded with its seed."""

    @abstractmethod
    def describe(self) -> dict:
        """Return what identifies the model in ``metrics.json``."""

    def check_suite(self, items: list[SuiteItem]) -> None:
        """Raise when the suite lacks something this system needs."""


class StudentSystem(System):
    def __init__(self, student, backbone, settings: SamplerSettings, model: Path | None = None):
        self.student, self.backbone, self.settings, self.model = student, backbone, settings, model
        self.resolution = self.backbone.resolution
        self.pipeline = _quiet(self.backbone.pipeline(self.settings.scheduler))
        self.encoder = PromptEncoder(self.student, self.backbone, self.settings.unconditional)

    @classmethod
    def open(cls, model: Path, overrides: dict) -> "StudentSystem":
        """Load a run or student folder with its recorded sampler settings, changed by ``overrides``."""
        student, backbone, settings = load_student_and_backbone(model)
        return cls(student, backbone, replace(settings, **overrides), model)

    def check_suite(self, items: list[SuiteItem]) -> None:
        """Warn once about captions longer than the student's length, before generation starts."""
        self.encoder.normalize([item.caption for item in items])
        self.encoder.warn_truncation = False

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        return run_pipeline(self.pipeline, self.settings, seeds, self.resolution,
                            **self.encoder.pipeline_inputs(prompts, ""))

    def describe(self) -> dict:
        meta = self.student.metadata
        return {"kind": "student", "path": str(self.model.resolve()) if self.model else None,
                "language": meta.get("language"), "backbone": meta.get("backbone"),
                "backbone_folder": str(self.backbone.source), "student_max_length": self.student.max_length}


class TeacherSystem(System):
    """The recipe's backbone with English captions through its own pipeline and text encoder."""

    kind = "teacher"

    def __init__(self, recipe: Recipe, overrides: dict):
        self.recipe = recipe
        config = recipe.backbone
        self.backbone = load_backbone(config.family, config.source, config.revision)
        samples = recipe.samples
        defaults = SamplerSettings(samples.scheduler, samples.steps, samples.guidance, unconditional="teacher")
        self.settings = replace(defaults, **overrides)
        self.resolution = self.backbone.resolution
        self.pipeline = _quiet(self.backbone.pipeline(self.settings.scheduler))

    def prompts(self, items: list[SuiteItem]) -> list[str]:
        return [item.english for item in items]

    def check_suite(self, items: list[SuiteItem]) -> None:
        if any(item.english is None for item in items):
            raise DataError("the teacher baseline needs the suite's English captions, and this suite has none "
                            "(english_field in the language pack); evaluate the teacher on a suite with English "
                            "captions, such as mscoco-zh or demo")

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        return run_pipeline(self.pipeline, self.settings, seeds, self.resolution,
                            prompt=prompts, negative_prompt=[""] * len(prompts), **self.backbone.pipeline_options())

    def describe(self) -> dict:
        config = self.recipe.backbone
        return {"kind": self.kind, "recipe": self.recipe.name, "backbone": {
            "family": config.family, "source": str(self.backbone.source), "revision": config.revision}}


class TranslateSystem(TeacherSystem):
    """The "SD + Translation" baseline of Hu et al. 2023: translate each caption to English, then the stock backbone."""

    kind = "translate"

    def __init__(self, recipe: Recipe, overrides: dict, mt_model: str, batch_size: int = 16):
        super().__init__(recipe, overrides)
        self.translator = Translator(mt_model, batch_size)

    def prompts(self, items: list[SuiteItem]) -> list[str]:
        return self.translator([item.caption for item in items])

    def check_suite(self, items: list[SuiteItem]) -> None:
        return None

    def describe(self) -> dict:
        return {**super().describe(), "mt_model": self.translator.source}


class Translator:
    """Batched machine translation with a transformers sequence-to-sequence model (MarianMT, NLLB, M2M100)."""

    def __init__(self, source: str, batch_size: int = 16, max_new_tokens: int = 128):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        folder = resolve_model_source(source, "translation model", "--mt-model")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
        except (OSError, ValueError) as error:
            raise PolyiapError(f"{folder} is not a transformers translation model ({error}); pass a folder "
                               "holding a sequence-to-sequence model and its tokenizer via --mt-model") from None
        positions = getattr(self.model.config, "max_position_embeddings", None)  # learned positions end there
        self.max_new_tokens = min(max_new_tokens, positions - 1) if positions else max_new_tokens
        self.source, self.batch_size = source, batch_size

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> list[str]:
        result: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                    truncation=True, return_token_type_ids=False)
            output = self.model.generate(**tokens, max_new_tokens=self.max_new_tokens)
            result.extend(text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True))
        return result


class PipelineSystem(System):
    """A released diffusers text-to-image pipeline, sampled with the evaluation's sampler settings."""

    def __init__(self, folder: Path, defaults: SamplerSettings, overrides: dict, resolution: int | None):
        from diffusers import DiffusionPipeline

        self.folder = folder
        components = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        extra = {"safety_checker": None} if "safety_checker" in components else {}
        self.pipeline = _quiet(DiffusionPipeline.from_pretrained(folder, **extra))
        self.settings = replace(defaults, unconditional="pipeline", **overrides)
        self.pipeline.scheduler = make_sampler(self.settings.scheduler, dict(self.pipeline.scheduler.config))
        self.resolution = resolution or self._default_resolution()
        self.class_name = components.get("_class_name", "")

    def _default_resolution(self) -> int:
        denoiser = getattr(self.pipeline, "unet", None) or getattr(self.pipeline, "transformer", None)
        return int(denoiser.config.sample_size * self.pipeline.vae_scale_factor)

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        return run_pipeline(self.pipeline, self.settings, seeds, self.resolution,
                            prompt=prompts, negative_prompt=[""] * len(prompts))

    def describe(self) -> dict:
        return {"kind": "pipeline", "path": str(self.folder.resolve()), "class": self.class_name,
                "safety_checker": "disabled"}


def _quiet(pipeline):
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def open_system(model: str, baseline: str | None, recipe: Recipe, overrides: dict, mt_model: str | None,
                resolution: int | None) -> System:
    """Return the system that ``--model`` (and ``--baseline``) name, sampling at ``resolution`` when given."""
    if resolution is not None and resolution % 8:
        raise PolyiapError(f"--resolution {resolution} is not a multiple of 8, which the VAE needs; "
                           f"use {resolution // 8 * 8 or 8} or {resolution // 8 * 8 + 8}")
    system = _open(model, baseline, recipe, overrides, mt_model, resolution)
    system.resolution = resolution or system.resolution
    return system


def _open(model: str, baseline: str | None, recipe: Recipe, overrides: dict, mt_model: str | None,
          resolution: int | None) -> System:
    if baseline is not None:
        if baseline != "translate":
            raise PolyiapError(f"unknown --baseline {baseline!r}; the one baseline is `translate` "
                               "(the teacher baseline is --model teacher)")
        if not mt_model:
            raise PolyiapError("--baseline translate needs --mt-model PATH (a transformers translation model "
                               "from the target language to English, for example Helsinki-NLP/opus-mt-zh-en)")
        return TranslateSystem(recipe, overrides, mt_model)
    if model == "teacher":
        return TeacherSystem(recipe, overrides)
    path = Path(model).expanduser()
    if (path / STUDENT_CONFIG).is_file() or (path / "student" / STUDENT_CONFIG).is_file():
        return StudentSystem.open(path, overrides)
    if (path / "model_index.json").is_file():
        samples = recipe.samples
        return PipelineSystem(path, SamplerSettings(samples.scheduler, samples.steps, samples.guidance),
                              overrides, resolution)
    raise PolyiapError(f"--model {model!r} is not a run folder, a student folder, a diffusers pipeline folder "
                       "(model_index.json) or `teacher`; pass one of these")


def settings_record(system: System) -> dict:
    return {**asdict(system.settings), "resolution": system.resolution}
