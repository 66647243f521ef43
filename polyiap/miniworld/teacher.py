"""The miniature-world teacher: a tiny SD 1.x-architecture pipeline trained from scratch on English captions.

Training has two stages. First the VAE learns to reconstruct rendered scenes. Then the scenes of a fixed
pool are encoded once, and the UNet and the CLIP text encoder learn to denoise those latents conditioned
on freshly drawn English captions. A caption is empty with probability ``empty_prompt_rate``, so that
classifier-free guidance works. The result is saved with ``save_pretrained`` and loads through the
SD 1.x adapter like any Stable Diffusion folder.
"""

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polyiap.miniworld.captions import caption
from polyiap.miniworld.judge import images_to_tensor
from polyiap.miniworld.scenes import RESOLUTION, Scene, all_scenes, render_batch, sample_scenes

logger = logging.getLogger(__name__)

# beta_start and beta_end of the noise schedules a teacher can train with. Stable Diffusion's
# "scaled_linear" keeps sqrt(alpha_bar) at 0.068 at the last timestep, so a noisy latent still shows
# where the object is and the UNet can take the position from it instead of from the caption. DDPM's
# "linear" leaves 0.006 there.
NOISE_SCHEDULES = {"scaled_linear": (0.00085, 0.012), "linear": (0.0001, 0.02)}


@dataclass
class TeacherConfig:
    """Sizes and training settings of the teacher."""

    seed: int = 0
    context_dim: int = 128
    text_layers: int = 2
    max_length: int = 24
    tokenizer_vocab_size: int = 700
    vae_channels: tuple[int, ...] = (16, 32)
    unet_channels: tuple[int, ...] = (32, 64, 64)
    vae_steps: int = 1500
    vae_batch_size: int = 64
    pool_size: int = 20000
    unet_steps: int = 4000
    unet_batch_size: int = 32
    unet_lr: float = 5e-4
    empty_prompt_rate: float = 0.1
    checkpoint_every: int = 250
    noise_schedule: str = "scaled_linear"


def vocabulary_captions(seed: int = 0, per_scene: int = 40) -> list[str]:
    """Return English captions covering every template and synonym, for the tokenizer."""
    rng = np.random.default_rng(seed)
    return [caption(scene, "en", rng) for scene in all_scenes() for _ in range(per_scene)]


def build_teacher_pipeline(config: TeacherConfig):
    """Return a randomly initialised SD 1.x pipeline of the teacher's sizes."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from polyiap.tokenizer_build import train_clip_bpe

    tokenizer = train_clip_bpe(vocabulary_captions(config.seed), config.tokenizer_vocab_size, config.max_length)
    levels = len(config.unet_channels)
    torch.manual_seed(config.seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=config.context_dim, intermediate_size=2 * config.context_dim,
        num_hidden_layers=config.text_layers, num_attention_heads=4, max_position_embeddings=config.max_length,
        projection_dim=config.context_dim, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(
        block_out_channels=list(config.vae_channels), layers_per_block=1, latent_channels=4, norm_num_groups=8,
        down_block_types=["DownEncoderBlock2D"] * len(config.vae_channels),
        up_block_types=["UpDecoderBlock2D"] * len(config.vae_channels), mid_block_add_attention=False,
        sample_size=RESOLUTION)
    latent_size = RESOLUTION // 2 ** (len(config.vae_channels) - 1)
    unet = UNet2DConditionModel(
        sample_size=latent_size, block_out_channels=list(config.unet_channels), layers_per_block=1,
        down_block_types=["CrossAttnDownBlock2D"] * levels, up_block_types=["CrossAttnUpBlock2D"] * levels,
        cross_attention_dim=config.context_dim, attention_head_dim=8, norm_num_groups=16)
    if config.noise_schedule not in NOISE_SCHEDULES:
        raise ValueError(f"noise schedule {config.noise_schedule!r} is not known; "
                         f"use one of {', '.join(NOISE_SCHEDULES)}")
    beta_start, beta_end = NOISE_SCHEDULES[config.noise_schedule]
    scheduler = PNDMScheduler(beta_start=beta_start, beta_end=beta_end, beta_schedule=config.noise_schedule,
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def train_vae(vae: nn.Module, config: TeacherConfig, rng: np.random.Generator) -> float:
    """Train the VAE on fresh renders; return the final reconstruction MSE (images in [-1, 1])."""
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.vae_steps)
    vae.train()
    mse = float("nan")
    for step in range(config.vae_steps):
        pixels = images_to_tensor(render_batch(sample_scenes(config.vae_batch_size, rng), rng)) * 2 - 1
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        mse = nn.functional.mse_loss(reconstruction, pixels)
        loss = mse + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            logger.info("vae step %d: mse %.5f", step, mse.item())
    vae.eval()
    return mse.item()


@torch.no_grad()
def encode_pool(vae: nn.Module, config: TeacherConfig, rng: np.random.Generator) -> tuple[torch.Tensor, list]:
    """Render and encode the training pool; return unscaled latent means and the scenes."""
    scenes = sample_scenes(config.pool_size, rng)
    means = []
    for start in range(0, len(scenes), 500):
        pixels = images_to_tensor(render_batch(scenes[start:start + 500], rng)) * 2 - 1
        means.append(vae.encode(pixels).latent_dist.mean)
    return torch.cat(means), scenes


def train_teacher(output: Path, work_dir: Path, config: TeacherConfig, judge=None, command: str = "") -> dict:
    """Train the teacher and save it to ``output``; resumes from the checkpoints in ``work_dir``.

    Creating a file named ``STOP`` in ``work_dir`` ends the UNet training early and saves the teacher as it is.

    Returns a summary of the run (times, final losses, judge accuracy when a judge is given).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rng = np.random.default_rng(config.seed)
    pipeline = _load_or_build(work_dir, config)
    summary = {"command": command, "config": asdict(config)}

    if not (work_dir / "vae" / "config.json").is_file():
        summary["vae_mse"] = train_vae(pipeline.vae, config, rng)
        _save_atomically(pipeline.vae, work_dir / "vae")
    summary["vae_seconds"] = round(time.monotonic() - started, 1)

    latents, scenes = _pool(pipeline, work_dir, config, rng)
    pipeline.vae.register_to_config(scaling_factor=float(1 / latents.std()))
    summary.update(_train_unet(pipeline, latents, scenes, work_dir, config, judge))
    summary["seconds"] = round(time.monotonic() - started, 1)

    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    pipeline.save_pretrained(staging)
    (staging / "teacher_training.json").write_text(json.dumps(summary, indent=2) + "\n")
    if output.exists():
        shutil.rmtree(output)
    os.replace(staging, output)
    return summary


def _load_or_build(work_dir: Path, config: TeacherConfig):
    from diffusers import AutoencoderKL

    pipeline = build_teacher_pipeline(config)
    if (work_dir / "vae" / "config.json").is_file():
        pipeline.vae = AutoencoderKL.from_pretrained(work_dir / "vae")
    return pipeline


def _pool(pipeline, work_dir: Path, config: TeacherConfig, rng: np.random.Generator):
    path = work_dir / "pool.pt"
    if path.is_file():
        saved = torch.load(path)
        return saved["latents"], [Scene(*values) for values in saved["scenes"]]
    latents, scenes = encode_pool(pipeline.vae, config, rng)
    rows = [[scene.shape, scene.colour, scene.position, scene.size] for scene in scenes]
    torch.save({"latents": latents, "scenes": rows}, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return latents, scenes


def _save_atomically(model: nn.Module, folder: Path) -> None:
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)


def _train_unet(pipeline, latents: torch.Tensor, scenes: list[Scene], work_dir: Path, config: TeacherConfig,
                judge) -> dict:
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    unet, text_encoder = pipeline.unet, pipeline.text_encoder
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.unet_lr, weight_decay=0.0)
    step = _resume(work_dir / "checkpoint.pt", unet, text_encoder, optimizer)
    # Re-seeded from the step, so a resumed run draws new batches rather than repeating the first ones.
    rng = np.random.default_rng([config.seed, step])
    torch.manual_seed(config.seed + step)
    scale = pipeline.vae.config.scaling_factor
    unet.train()
    text_encoder.train()
    history, started = [], time.monotonic()
    while step < config.unet_steps and not (work_dir / "STOP").exists():
        _set_lr(optimizer, config, step)
        loss = _unet_step(pipeline, noise_scheduler, latents, scenes, scale, config, rng)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        step += 1
        history.append(loss.item())
        if step % 50 == 0:
            logger.info("unet step %d: loss %.4f (%.2f s/step)", step, float(np.mean(history[-50:])),
                        (time.monotonic() - started) / len(history))
        if step % config.checkpoint_every == 0:
            _checkpoint(work_dir / "checkpoint.pt", unet, text_encoder, optimizer, step)
        if judge is not None and step % 1000 == 0:
            _log_judged_accuracy(pipeline, judge, step)
            unet.train()
            text_encoder.train()
    _checkpoint(work_dir / "checkpoint.pt", unet, text_encoder, optimizer, step)
    unet.eval()
    text_encoder.eval()
    return {"unet_steps": step, "final_loss": float(np.mean(history[-200:])) if history else None}


def _unet_step(pipeline, noise_scheduler, latents, scenes, scale, config: TeacherConfig, rng) -> torch.Tensor:
    indices = rng.integers(0, len(latents), size=config.unet_batch_size)
    texts = ["" if rng.random() < config.empty_prompt_rate else caption(scenes[i], "en", rng) for i in indices]
    input_ids = pipeline.tokenizer(texts, padding="max_length", max_length=config.max_length, truncation=True,
                                   return_tensors="pt").input_ids
    states = pipeline.text_encoder(input_ids)[0]
    clean = latents[torch.from_numpy(indices)] * scale
    noise = torch.randn_like(clean)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(indices),))
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)
    prediction = pipeline.unet(noisy, timesteps, encoder_hidden_states=states).sample
    return nn.functional.mse_loss(prediction, noise)


def _set_lr(optimizer, config: TeacherConfig, step: int) -> None:
    """Linear warm-up over 200 steps, then a cosine decay to a tenth of the rate."""
    warmup = min(1.0, (step + 1) / 200)
    progress = step / max(config.unet_steps, 1)
    factor = warmup * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress)))
    for group in optimizer.param_groups:
        group["lr"] = float(config.unet_lr * factor)


def _resume(path: Path, unet, text_encoder, optimizer) -> int:
    if not path.is_file():
        return 0
    state = torch.load(path)
    # NOTE: the checkpoint does not record the noise schedule, so a resume with another
    # --noise-schedule continues on the new one without a warning.
    unet.load_state_dict(state["unet"])
    text_encoder.load_state_dict(state["text_encoder"])
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resuming the teacher's UNet training at step %d", state["step"])
    return state["step"]


def _checkpoint(path: Path, unet, text_encoder, optimizer, step: int) -> None:
    state = {"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
             "optimizer": optimizer.state_dict(), "step": step}
    torch.save(state, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def _log_judged_accuracy(pipeline, judge, step: int) -> None:
    from polyiap.miniworld.metrics import judge_prompts

    pipeline.unet.eval()
    pipeline.text_encoder.eval()
    scores = judge_prompts(pipeline, judge, "en", count=48, seed=7, steps=20)
    logger.info("unet step %d: judged accuracy %s", step, {k: round(v, 3) for k, v in scores.items()})
