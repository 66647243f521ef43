"""Helpers of the compatibility tests: train add-ons for the base model on a pixel objective, and judge images.

The judges here measure one attribute objectively (mean colour, horizontal position of brightness).
A learned attribute judge can replace them, because the tests only compare a judge's values between
teacher and student images.
"""

import numpy as np
import torch
from PIL import Image

PROMPT_PAIRS = [("A brown bear standing in the grass.", "一只站在草地上的棕熊"),
                ("A boat on the sea.", "海上的一艘船"),
                ("A plate of fruit on a table.", "桌子上的一盘水果"),
                ("Two dogs playing in the snow.", "两只狗在雪地里玩")]
SEEDS = [0, 1, 2]
STEPS = 5


def redness(image: Image.Image) -> float:
    """Return the mean red level minus the mean of green and blue, in 0-255 levels."""
    pixels = np.asarray(image, dtype=np.float64)
    return float(pixels[..., 0].mean() - pixels[..., 1:].mean())


def brightness_column(image: Image.Image) -> float:
    """Return the horizontal centre of brightness, from 0 (left edge) to 1 (right edge)."""
    pixels = np.asarray(image.convert("L"), dtype=np.float64) + 1e-6
    columns = pixels.sum(axis=0)
    return float((columns * np.linspace(0, 1, len(columns))).sum() / columns.sum())


def sample(pipeline, prompts: list[str], seeds: list[int], **inputs) -> list[Image.Image]:
    """Return one image per (prompt, seed), each from its own CPU generator."""
    pipeline.set_progress_bar_config(disable=True)
    images = []
    for prompt in prompts:
        for seed in seeds:
            images += pipeline(prompt, num_inference_steps=STEPS, guidance_scale=7.5,
                               generator=torch.Generator().manual_seed(seed), **inputs).images
    return images


def predicted_images(unet, vae, scheduler, context, generator, control=None) -> torch.Tensor:
    """Return the VAE decoding of the UNet's one-step estimate of the clean image, in [-1, 1].

    ``control`` is a callable that returns the ControlNet's residuals for (latents, timesteps, context).
    """
    batch = context.shape[0]
    latents = torch.randn(batch, 4, unet.config.sample_size, unet.config.sample_size, generator=generator)
    timesteps = torch.randint(300, 900, (batch,), generator=generator)
    alphas = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    extra = control(latents, timesteps, context) if control else {}
    noise = unet(latents, timesteps, encoder_hidden_states=context, **extra).sample
    clean = (latents - (1 - alphas).sqrt() * noise) / alphas.sqrt()
    return vae.decode(clean / vae.config.scaling_factor).sample


def train(parameters, loss_of_step, steps: int, lr: float) -> list[float]:
    """Run Adam on ``parameters`` for ``steps`` steps of ``loss_of_step(step)`` and return the losses."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    losses = []
    for step in range(steps):
        loss = loss_of_step(step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def red_loss(pixels: torch.Tensor) -> torch.Tensor:
    """Return a loss that falls as images get redder (pixels in [-1, 1], shape (B, 3, H, W))."""
    return -(pixels[:, 0] - pixels[:, 1:].mean(dim=1)).mean()


def agreement(teacher_shifts: list[float], student_shifts: list[float]) -> float:
    """Return the share of (prompt, seed) cases where the student's shift has the teacher's sign."""
    same = [np.sign(t) == np.sign(s) and t != 0 for t, s in zip(teacher_shifts, student_shifts)]
    return float(np.mean(same))
