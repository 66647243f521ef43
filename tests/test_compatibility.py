"""Add-ons made for the base model work with the exported student: a UNet LoRA, a ControlNet, a fine-tuned UNet.

Each add-on is trained on the base model with English (teacher) prompts only, then judged on images
made from the teacher's English prompts and from the student's Chinese prompts.
"""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from polyiap.cli.app import app
from tests.compat_helpers import (PROMPT_PAIRS, SEEDS, agreement, brightness_column, predicted_images, red_loss,
                                  redness, sample, train)

ENGLISH = [english for english, _ in PROMPT_PAIRS]
CHINESE = [chinese for _, chinese in PROMPT_PAIRS]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    output = tmp_path_factory.mktemp("compat") / "pipeline"
    result = CliRunner().invoke(app, ["export", "--model", str(trained_run), "--output", str(output)])
    assert result.exit_code == 0, result.output
    return output


@pytest.fixture(scope="module")
def base(tiny_backbone_dir):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_backbone_dir)


def teacher_context(base, captions):
    with torch.no_grad():
        return base.encode_prompt(captions, "cpu", 1, False)[0]


def shifts(before, after, judge):
    return [judge(b) - judge(a) for a, b in zip(before, after)]


@pytest.fixture(scope="module")
def red_lora(base, tmp_path_factory):
    """A LoRA on the base UNet trained, with English prompts only, to make images redder."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(base.name_or_path, subfolder="unet")
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    context = teacher_context(base, ENGLISH + [""])
    generator = torch.Generator().manual_seed(0)
    losses = train([p for p in unet.parameters() if p.requires_grad],
                   lambda step: red_loss(predicted_images(unet, base.vae, base.scheduler, context, generator)),
                   steps=30, lr=3e-3)
    assert losses[-1] < losses[0]
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder


def test_lora_shifts_student_like_teacher(base, exported, red_lora):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    teacher = StableDiffusionPipeline.from_pretrained(base.name_or_path)
    student = DiffusionPipeline.from_pretrained(exported)
    teacher_before, student_before = sample(teacher, ENGLISH, SEEDS), sample(student, CHINESE, SEEDS)
    teacher.load_lora_weights(red_lora)
    student.load_lora_weights(red_lora)
    teacher_shift = shifts(teacher_before, sample(teacher, ENGLISH, SEEDS), redness)
    student_shift = shifts(student_before, sample(student, CHINESE, SEEDS), redness)
    assert np.mean(teacher_shift) > 5  # the LoRA visibly acts on the base model
    assert agreement(teacher_shift, student_shift) >= 0.9
    assert 0.5 <= np.mean(student_shift) / np.mean(teacher_shift) <= 2.0


def test_finetuned_unet_accepts_student(base, exported, tmp_path):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(base.name_or_path, subfolder="unet")
    context = teacher_context(base, ENGLISH + [""])
    generator = torch.Generator().manual_seed(1)
    train(list(unet.parameters()),
          lambda step: red_loss(predicted_images(unet, base.vae, base.scheduler, context, generator)),
          steps=10, lr=1e-4)
    unet.save_pretrained(tmp_path / "finetuned-unet")

    finetuned = UNet2DConditionModel.from_pretrained(tmp_path / "finetuned-unet")
    teacher = StableDiffusionPipeline.from_pretrained(base.name_or_path)
    student = DiffusionPipeline.from_pretrained(exported)
    swapped_teacher = StableDiffusionPipeline.from_pretrained(base.name_or_path, unet=finetuned)
    swapped_student = DiffusionPipeline.from_pretrained(exported, unet=finetuned)
    teacher_shift = shifts(sample(teacher, ENGLISH, SEEDS), sample(swapped_teacher, ENGLISH, SEEDS), redness)
    student_shift = shifts(sample(student, CHINESE, SEEDS), sample(swapped_student, CHINESE, SEEDS), redness)
    assert np.mean(teacher_shift) > 5
    assert agreement(teacher_shift, student_shift) >= 0.9
    assert 0.5 <= np.mean(student_shift) / np.mean(teacher_shift) <= 2.0


def square_image(column: int, size: int = 64):
    """Return a black control image with a white square whose left edge is at ``column``."""
    from PIL import Image

    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[16:48, column:column + 20] = 255
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def square_controlnet(base):
    """A ControlNet made from the base UNet and trained, with English prompts only, to draw the control square."""
    from diffusers import ControlNetModel

    # The tiny VAE downsamples by 4, so the control image embedding downsamples by 4 (two steps), not SD's 8.
    controlnet = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=(16, 32, 96))
    context = teacher_context(base, ENGLISH)
    generator = torch.Generator().manual_seed(2)
    columns = [4, 40, 22, 10, 34]

    def loss_of_step(step):
        images = [square_image(columns[(step + i) % len(columns)]) for i in range(len(context))]
        control = torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images]).float() / 255

        def residuals(latents, timesteps, hidden):
            down, mid = controlnet(latents, timesteps, encoder_hidden_states=hidden, controlnet_cond=control,
                                   return_dict=False)
            return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

        pixels = predicted_images(base.unet, base.vae, base.scheduler, context, generator, residuals)
        return torch.nn.functional.mse_loss(pixels, control * 2 - 1)

    base.unet.requires_grad_(False)
    base.vae.requires_grad_(False)
    losses = train(list(controlnet.parameters()), loss_of_step, steps=40, lr=1e-3)
    assert losses[-1] < losses[0]
    return controlnet


def test_controlnet_follows_control_with_student(base, exported, square_controlnet):
    from diffusers import StableDiffusionControlNetPipeline

    student = StableDiffusionControlNetPipeline.from_pretrained(exported, controlnet=square_controlnet)
    left = sample(student, CHINESE, SEEDS, image=square_image(4))
    right = sample(student, CHINESE, SEEDS, image=square_image(40))
    followed = [brightness_column(r) > brightness_column(l) for l, r in zip(left, right)]
    assert np.mean(followed) >= 0.9
    difference = np.mean([np.abs(np.asarray(l, float) - np.asarray(r, float)).mean() for l, r in zip(left, right)])
    assert difference > 5  # the control visibly changes the image
