"""Where does a miniature-world teacher take an object's position from: the caption or the starting noise?

For each prompt the script draws a second scene with the same shape, colour and size at another
position and encodes its render with the teacher's VAE. It mixes that latent into the starting noise
at the strength the teacher's training saw at the first sampling timestep (sqrt(alpha_bar)). It samples
twice through the diffusers pipeline, from the plain noise and from the mixed one, and prints the
share of images whose judged position is the prompt's and the share whose position is the mixed-in
scene's. A teacher that reads position from the caption keeps following the prompt. A teacher that
learned to read it from what is left of the image in a noisy latent follows the mixed-in scene.

Usage::

    python benchmarks/miniworld_position.py --teacher polyiap/miniworld/assets/teacher --count 60
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from polyiap.miniworld.captions import caption
from polyiap.miniworld.judge import Judge, images_to_tensor
from polyiap.miniworld.scenes import POSITIONS, Scene, render_batch, sample_scenes

ASSETS = Path(__file__).resolve().parents[1] / "polyiap" / "miniworld" / "assets"


def moved(scenes: list[Scene], rng: np.random.Generator) -> list[Scene]:
    """Return each scene at one of the two other positions, drawn at random."""
    shifted = []
    for scene in scenes:
        step = 1 + int(rng.integers(0, 2))
        position = POSITIONS[(POSITIONS.index(scene.position) + step) % len(POSITIONS)]
        shifted.append(Scene(scene.shape, scene.colour, position, scene.size))
    return shifted


def judged_positions(pipeline, judge: Judge, prompts: list[str], latents: torch.Tensor, steps: int,
                     guidance: float) -> list[str]:
    images = pipeline(prompts, num_inference_steps=steps, guidance_scale=guidance, latents=latents,
                      output_type="np").images
    labels = judge.predict(images_to_tensor((images * 255).round().astype(np.uint8)))["position"]
    return [POSITIONS[index] for index in labels.tolist()]


def main() -> None:
    from diffusers import StableDiffusionPipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=ASSETS / "teacher")
    parser.add_argument("--judge", type=Path, default=ASSETS / "judge")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    pipeline = StableDiffusionPipeline.from_pretrained(args.teacher, safety_checker=None,
                                                       requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    judge = Judge.load(args.judge)
    rng = np.random.default_rng(args.seed)
    scenes = sample_scenes(args.count, rng)
    prompts = [caption(scene, "en", rng) for scene in scenes]
    others = moved(scenes, rng)
    with torch.no_grad():
        pixels = images_to_tensor(render_batch(others, rng)) * 2 - 1
        mixed_in = pipeline.vae.encode(pixels).latent_dist.mean * pipeline.vae.config.scaling_factor
    pipeline.scheduler.set_timesteps(args.steps)
    first = int(pipeline.scheduler.timesteps[0])
    alpha_bar = pipeline.scheduler.alphas_cumprod[first]
    noise = torch.randn(mixed_in.shape, generator=torch.Generator().manual_seed(args.seed))
    starts = {"plain noise": noise, "noise with another position mixed in":
              (1 - alpha_bar).sqrt() * noise + alpha_bar.sqrt() * mixed_in}
    print(f"teacher {args.teacher}: first timestep {first}, sqrt(alpha_bar) {alpha_bar.sqrt().item():.4f}")
    for name, latents in starts.items():
        positions = judged_positions(pipeline, judge, prompts, latents, args.steps, args.guidance)
        prompt_share = np.mean([p == s.position for p, s in zip(positions, scenes)])
        mixed_share = np.mean([p == s.position for p, s in zip(positions, others)])
        print(f"{name}: position of the prompt {prompt_share:.3f}, of the mixed-in scene {mixed_share:.3f}")


if __name__ == "__main__":
    main()
