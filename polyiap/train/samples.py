"""Progress samples: a grid of images generated from the language pack's sample prompts."""

import os
from pathlib import Path

import torch
from PIL import Image

from polyiap.backbones.base import Backbone
from polyiap.encoders import StudentEncoder


@torch.no_grad()
def sample_grid(backbone: Backbone, student: StudentEncoder, prompts: list[str], scheduler: str, steps: int,
                guidance: float, unconditional: str, seed: int) -> Image.Image:
    """Generate one image per prompt with the student's embeddings and return them side by side."""
    pipeline = backbone.pipeline(scheduler)
    pipeline.set_progress_bar_config(disable=True)
    was_training = student.training
    student.eval()
    try:
        positive = student.encode(prompts)
        if unconditional == "student":
            negative = student.encode([""] * len(prompts))
        else:
            negative = backbone.teacher_unconditional(len(prompts))
        generator = torch.Generator().manual_seed(seed)
        images = pipeline(**backbone.pipeline_inputs(positive, negative), **backbone.pipeline_options(),
                          num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                          height=backbone.resolution, width=backbone.resolution).images
    finally:
        student.train(was_training)
    width, height = images[0].size
    grid = Image.new("RGB", (width * len(images), height))
    for index, image in enumerate(images):
        grid.paste(image, (index * width, 0))
    return grid


def save_png(image: Image.Image, path: Path, text: dict[str, str] | None = None) -> None:
    """Write ``image`` to ``path`` whole (through a temporary file), with ``text`` as PNG text chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp.png")
    image.save(temporary, pnginfo=info)
    os.replace(temporary, path)
