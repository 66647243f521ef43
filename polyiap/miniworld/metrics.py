"""Judged metrics of generated scenes: attribute accuracy, same-seed agreement and Fréchet distance."""

import numpy as np
import torch

from polyiap.miniworld.captions import caption
from polyiap.miniworld.judge import Judge, images_to_tensor, scene_labels
from polyiap.miniworld.scenes import ATTRIBUTES, Scene, sample_scenes


def judged_attributes(judge: Judge, images: np.ndarray) -> dict[str, torch.Tensor]:
    """Return the judge's reading of uint8 (N, H, W, 3) images, (N,) per attribute."""
    return judge.predict(images_to_tensor(images))


def accuracy(judge: Judge, images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Return the share of images showing each prompted attribute, and the share showing all of them."""
    predicted = judged_attributes(judge, images)
    labels = scene_labels(scenes)
    correct = {name: predicted[name] == labels[name] for name in ATTRIBUTES}
    scores = {name: hits.float().mean().item() for name, hits in correct.items()}
    scores["all"] = torch.stack(list(correct.values())).all(0).float().mean().item()
    return scores


def agreement(judge: Judge, images: np.ndarray, reference: np.ndarray) -> float:
    """Return the share of image pairs whose judged attributes are all identical."""
    first, second = judged_attributes(judge, images), judged_attributes(judge, reference)
    same = torch.stack([first[name] == second[name] for name in ATTRIBUTES]).all(0)
    return same.float().mean().item()


def frechet_distance(judge: Judge, images: np.ndarray, reference: np.ndarray) -> float:
    """Return the Fréchet distance between Gaussians fitted to the judge's features of both image sets."""
    with torch.no_grad():
        first = judge.features(images_to_tensor(images)).double().numpy()
        second = judge.features(images_to_tensor(reference)).double().numpy()
    mean_gap = first.mean(0) - second.mean(0)
    cov_first, cov_second = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    # trace(sqrt(C1 C2)) from the eigenvalues of the symmetric matrix sqrt(C1) C2 sqrt(C1).
    root_first = _sqrt_psd(cov_first)
    cross = np.linalg.eigvalsh(root_first @ cov_second @ root_first)
    trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(mean_gap @ mean_gap + np.trace(cov_first) + np.trace(cov_second) - 2 * trace_sqrt)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def judge_prompts(pipeline, judge: Judge, language: str, count: int, seed: int, steps: int = 20,
                  guidance: float = 5.0) -> dict[str, float]:
    """Generate one image per random training scene, captioned in ``language``, and return its accuracy."""
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(count, rng)
    prompts = [caption(scene, language, rng) for scene in scenes]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        images = pipeline(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                          output_type="np").images
    return accuracy(judge, (images * 255).round().astype(np.uint8), scenes)
