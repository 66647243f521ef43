"""Text-to-image with a trained student: the backbone's diffusers pipeline fed with student embeddings.

Prompt normalisation and encoding live in `polyiap.prompts`, shared with eval and export.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from polyiap.backbones import Backbone, load_backbone
from polyiap.encoders import StudentEncoder
from polyiap.encoders.student import STUDENT_CONFIG
from polyiap.errors import PolyiapError
from polyiap.prompts import PromptEncoder

__all__ = ["PromptEncoder", "SamplerSettings", "generate_images", "load_student_and_backbone", "run_pipeline",
           "student_folder"]

logger = logging.getLogger(__name__)


@dataclass
class SamplerSettings:
    """Sampler settings; the defaults come from the recipe the student was trained with."""

    scheduler: str = "pndm"
    steps: int = 50
    guidance: float = 7.5
    unconditional: str = "student"


def student_folder(model: Path) -> Path:
    """Return the student folder of a run folder, or ``model`` itself when it is a student folder."""
    for candidate in (model, model / "student"):
        if (candidate / STUDENT_CONFIG).is_file():
            return candidate
    raise PolyiapError(f"{str(model)!r} is neither a run folder nor a student folder (no {STUDENT_CONFIG} in it "
                       "or in its student/ subfolder); pass the --output folder of `polyiap transfer`")


def load_student_and_backbone(model: Path) -> tuple[StudentEncoder, Backbone, SamplerSettings]:
    """Load a trained student, the backbone it was trained for and its recorded sampler settings."""
    student = StudentEncoder.load(student_folder(model)).eval()
    backbone_info = student.metadata.get("backbone") or {}
    if "family" not in backbone_info:
        raise PolyiapError(f"{model} records no backbone (a student saved by an older polyiap); retrain it")
    backbone = load_backbone(backbone_info["family"], backbone_info.get("source"), backbone_info.get("revision"))
    sampler = SamplerSettings(**student.metadata.get("sampler", {}),
                              unconditional=student.metadata.get("unconditional", "student"))
    return student, backbone, sampler


@torch.no_grad()
def run_pipeline(pipeline, settings: SamplerSettings, seeds: list[int], size: int, **inputs) -> list[Image.Image]:
    """Call a diffusers text-to-image pipeline with one CPU generator per image, seeded from ``seeds``.

    ``inputs`` are the pipeline's text inputs (``prompt_embeds=`` or ``prompt=`` and their negatives).
    Generators on the CPU make an image depend only on its own seed, on any device and in any batch.
    """
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    return pipeline(**inputs, num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                    generator=generators, height=size, width=size).images


@torch.no_grad()
def generate_images(student: StudentEncoder, backbone: Backbone, prompts: list[str], settings: SamplerSettings,
                    negative_prompt: str = "", seed: int = 0, num_images: int = 1,
                    resolution: int | None = None) -> list[list[Image.Image]]:
    """Generate ``num_images`` images per prompt and return one list of images per prompt.

    Image j of every prompt starts from its own generator seeded with ``seed + j``, so an image depends
    only on its prompt and seed, not on the other prompts of the batch.
    """
    pipeline = backbone.pipeline(settings.scheduler)
    pipeline.set_progress_bar_config(disable=True)
    encoder = PromptEncoder(student, backbone, settings.unconditional)
    inputs = encoder.pipeline_inputs(prompts, negative_prompt)
    size = resolution or backbone.resolution
    results: list[list[Image.Image]] = [[] for _ in prompts]
    for index in range(num_images):
        images = run_pipeline(pipeline, settings, [seed + index] * len(prompts), size, **inputs)
        for prompt_images, image in zip(results, images):
            prompt_images.append(image)
    return results
