"""The miniature-world experiments: which conditions are trained, and how each is measured.

Every condition trains a student with `polyiap.train.transfer` from the ``miniworld`` recipe plus its
own overrides. It then generates one image per evaluation prompt through the backbone's diffusers
pipeline, with the same seed per prompt as the teacher's English image, and the judge scores them.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polyiap.miniworld.captions import caption
from polyiap.miniworld.metrics import accuracy, agreement, frechet_distance
from polyiap.miniworld.scenes import Scene, render_batch, sample_scenes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Condition:
    """One row of the results table.

    Attributes:
        name: row label.
        group: the experiment the row belongs to (method, initialisation, data size, empty prompt, queries).
        overrides: ``--set`` overrides of the ``miniworld`` recipe.
        kind: ``student`` (trained), ``untrained`` (built, never trained) or ``teacher`` (English prompts).
        pretrained_init: start from a masked-LM pretrained on the target captions instead of random weights.
        unconditional: sampling's unconditional embedding when it differs from the recipe's.
        same_as: the name of another condition that trains exactly the same run, whose result it reuses.
    """

    name: str
    group: str
    overrides: tuple[str, ...] = ()
    kind: str = "student"
    pretrained_init: bool = False
    unconditional: str | None = None
    same_as: str | None = None

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")


REFERENCE = "pivot (shared queries)"


def conditions(data_sizes: tuple[int, ...] = (100, 300, 1000, 3000), recipe_size: int = 3000) -> list[Condition]:
    """Return every condition; the pivot student on the recipe's data is the reference row of each group.

    The data-size row of ``recipe_size`` images is the reference run itself.
    """
    rows = [
        Condition("teacher, English prompts", "method", kind="teacher"),
        Condition(REFERENCE, "method"),
        Condition("plain denoising loss", "method", ("loss.name=denoise",)),
        Condition("untrained student", "method", kind="untrained"),
        Condition("pivot, pretrained init", "initialisation", pretrained_init=True),
        Condition("pivot, two-pass queries", "queries", ("loss.queries=two-pass",)),
        # Without the empty prompt in training, the student's own empty-prompt embedding is untrained:
        # guidance then steers away from an arbitrary point.
        Condition("empty_prompt_rate 0, student unconditional", "empty prompt",
                  ("data.empty_prompt_rate=0", "samples.unconditional=teacher"), unconditional="student"),
        Condition("empty_prompt_rate 0, teacher unconditional", "empty prompt",
                  ("data.empty_prompt_rate=0", "samples.unconditional=teacher")),
    ]
    for size in data_sizes:
        rows.append(Condition(f"pivot, {size} images", "data size",
                              (f"data.source=miniworld://train?count={size}&seed=0",),
                              same_as=REFERENCE if size == recipe_size else None))
    return rows


@dataclass
class EvalSet:
    """Evaluation prompts: scenes of the training combinations and of the held-out ones, with seeds."""

    scenes: list[Scene]
    held_out: list[bool]
    captions: dict[str, list[str]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    real: np.ndarray | None = None  # renders of the same scenes, the Fréchet distance's reference

    @classmethod
    def build(cls, count: int, held_out_count: int, languages: tuple[str, ...], seed: int = 2024) -> "EvalSet":
        rng = np.random.default_rng(seed)
        scenes = sample_scenes(count, rng) + sample_scenes(held_out_count, rng, held_out=True)
        flags = [False] * count + [True] * held_out_count
        texts = {language: [caption(scene, language, rng) for scene in scenes] for language in languages}
        seeds = [seed * 1000 + index for index in range(len(scenes))]
        return cls(scenes, flags, texts, seeds, render_batch(scenes, rng))


def score(judge, images: np.ndarray, eval_set: EvalSet, teacher_images: np.ndarray | None) -> dict[str, float]:
    """Return the judged metrics of one condition's images (uint8, one per evaluation prompt)."""
    seen = np.array([not flag for flag in eval_set.held_out])
    scenes = [scene for scene, flag in zip(eval_set.scenes, seen) if flag]
    metrics = {f"accuracy_{name}": value for name, value in accuracy(judge, images[seen], scenes).items()}
    if (~seen).any():
        held_out = [scene for scene, flag in zip(eval_set.scenes, seen) if not flag]
        metrics["held_out_accuracy_all"] = accuracy(judge, images[~seen], held_out)["all"]
    if teacher_images is not None:
        metrics["agreement"] = agreement(judge, images, teacher_images)
    metrics["frechet_distance"] = frechet_distance(judge, images, eval_set.real)
    return metrics


def write_json_atomically(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    os.replace(staging, path)
