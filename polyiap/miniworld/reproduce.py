"""``polyiap miniworld reproduce``: train and measure every condition, then write the report.

Results are stored per seed and condition under the work folder (``result.json``), so an interrupted
run continues where it stopped and ``--seeds 3`` reuses the first seed's results.
"""

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polyiap.generate import PromptEncoder, SamplerSettings, run_pipeline, student_folder
from polyiap.errors import DataError
from polyiap.miniworld import JUDGE_FOLDER
from polyiap.miniworld.captions import LANGUAGES
from polyiap.miniworld.experiments import Condition, EvalSet, conditions, score, write_json_atomically
from polyiap.miniworld.judge import Judge

logger = logging.getLogger(__name__)

RECIPE = "miniworld"


@dataclass
class ReproduceSettings:
    """Settings of a reproduction. ``quick`` shrinks every stage to check that it runs, not how well it works."""

    work: Path
    language: str = "zh"
    seeds: int = 1
    quick: bool = False
    teacher: Path | None = None
    judge: Path = JUDGE_FOLDER
    eval_count: int = 240
    held_out_count: int = 60
    overrides: tuple[str, ...] = ()  # ``--set`` overrides of the recipe for every condition, applied first

    def recipe_overrides(self) -> list[str]:
        overrides = [f"backbone.source={self.teacher}"] if self.teacher else []
        if self.quick:
            overrides += ["train.max_steps=20", "train.eval_every=10", "train.log_every=5", "train.warmup_steps=2",
                          "data.source=miniworld://train?count=300&seed=0", "samples.steps=10"]
        return overrides + list(self.overrides)

    def data_sizes(self) -> tuple[int, ...]:
        return (100, 300) if self.quick else (100, 300, 1000, 3000)

    def recipe_size(self) -> int:
        """Return the image count of the recipe's data (the reference run's)."""
        return 300 if self.quick else 3000

    def eval_sizes(self) -> tuple[int, int]:
        return (24, 8) if self.quick else (self.eval_count, self.held_out_count)


class Reproduction:
    """Runs the conditions of `conditions` for each seed and collects their results."""

    def __init__(self, settings: ReproduceSettings, on_message=logger.info):
        from polyiap.backbones import load_backbone
        from polyiap.packs import load_pack
        from polyiap.recipes import load_recipe

        self.settings, self.say = settings, on_message
        self.pack = load_pack(settings.language)
        if self.pack.code not in LANGUAGES or self.pack.code == "en":
            raise DataError(f"--lang {settings.language}: the miniature world has captions in "
                            f"{', '.join(LANGUAGES[1:])} only; pass one of them")
        self.base_recipe = load_recipe(RECIPE, settings.recipe_overrides())
        backbone = self.base_recipe.backbone
        self.backbone = load_backbone(backbone.family, backbone.source, backbone.revision)
        self.judge = Judge.load(settings.judge)
        count, held_out = settings.eval_sizes()
        self.eval_set = EvalSet.build(count, held_out, ("en", self.pack.code))
        samples = self.base_recipe.samples
        self.sampler = SamplerSettings(samples.scheduler, samples.steps, samples.guidance, samples.unconditional)
        self.teacher_images: np.ndarray | None = None
        self.written: set[Path] = set()
        self.reused: set[Path] = set()  # results stored by an earlier invocation

    def run(self) -> dict[str, list[dict]]:
        """Return the results of every condition, one entry per seed."""
        started = time.monotonic()
        results: dict[str, list[dict]] = {}
        for seed in range(self.settings.seeds):
            for condition in self.conditions():
                if condition.kind == "teacher" and seed > 0:
                    continue  # the teacher is not trained, so every seed would repeat the same images
                results.setdefault(condition.name, []).append(self.run_condition(condition, seed))
        self.say(f"all conditions done in {time.monotonic() - started:.0f} s")
        return results

    def conditions(self) -> list[Condition]:
        return conditions(self.settings.data_sizes(), self.settings.recipe_size())

    def run_condition(self, condition: Condition, seed: int) -> dict:
        """Train (unless stored already), generate and score one condition; return its result."""
        if condition.same_as:
            original = next(c for c in self.conditions() if c.name == condition.same_as)
            return {**self.run_condition(original, seed), "condition": condition.name, "group": condition.group}
        path = self.settings.work / f"seed-{seed}" / condition.slug / "result.json"
        if path.is_file():
            if path not in self.written:
                self.reused.add(path)
            return json.loads(path.read_text())
        if self.teacher_images is None:
            self.teacher_images = self._teacher_images()
        self.say(f"seed {seed}: {condition.name}")
        started = time.monotonic()
        if condition.kind == "teacher":
            images, losses = self.teacher_images, {}
        else:
            run = self._train(condition, seed)
            images, losses = self._student_images(run, condition), _losses(run)
        result = {"condition": condition.name, "group": condition.group, "seed": seed,
                  "metrics": score(self.judge, images, self.eval_set,
                                   None if condition.kind == "teacher" else self.teacher_images),
                  "losses": losses, "seconds": round(time.monotonic() - started, 1),
                  "images": str(path.parent.relative_to(self.settings.work) / "images.npy")}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.parent / "images.npy", images)
        write_json_atomically(path, result)
        self.written.add(path)
        return result

    def _train(self, condition: Condition, seed: int) -> Path:
        """Return the run folder of the condition's training, training it unless an equal run finished.

        Runs are keyed by their overrides, so conditions that differ only in sampling share one run.
        """
        from polyiap.recipes import load_recipe
        from polyiap.train import SilentProgress, transfer

        overrides = self.settings.recipe_overrides() + [f"train.seed={seed}", *condition.overrides]
        if condition.pretrained_init:
            overrides.append(f"student.init={self._pretrained(seed)}")
        key = hashlib.sha256(json.dumps([condition.kind, overrides]).encode()).hexdigest()[:12]
        output = self.settings.work / f"seed-{seed}" / "runs" / key
        if (output / "finished").is_file():
            return output
        shutil.rmtree(output, ignore_errors=True)  # an unfinished run from an interrupted reproduce
        recipe = load_recipe(RECIPE, overrides)
        if condition.kind == "untrained":
            _save_untrained(recipe, self.pack, output)
        else:
            transfer(recipe, self.pack, output, None, SilentProgress(), command=["polyiap miniworld reproduce"])
        (output / "finished").write_text(json.dumps(overrides) + "\n")
        return output

    def _pretrained(self, seed: int) -> Path:
        from polyiap.miniworld.pretrain import pretrain_masked_lm
        from polyiap.train.setup import read_recipe_triplets

        folder = self.settings.work / f"seed-{seed}" / "pretrained-masked-lm"
        if not (folder / "config.json").is_file():
            captions = [t.target for t in read_recipe_triplets(self.base_recipe, self.pack)]
            student = self.base_recipe.student
            pretrain_masked_lm(captions, folder, student.tiny_hidden_size, student.tiny_layers,
                               student.max_length, steps=20 if self.settings.quick else 400, seed=seed)
        return folder

    def _teacher_images(self) -> np.ndarray:
        pipeline = self.backbone.pipeline(self.sampler.scheduler)
        pipeline.set_progress_bar_config(disable=True)
        prompts = self.eval_set.captions["en"]
        return self._batched(lambda batch, seeds: run_pipeline(
            pipeline, self.sampler, seeds, self.backbone.resolution,
            prompt=[prompts[i] for i in batch], negative_prompt=[""] * len(batch)))

    def _student_images(self, run: Path, condition: Condition) -> np.ndarray:
        from polyiap.encoders import StudentEncoder

        student = StudentEncoder.load(student_folder(run)).eval()
        unconditional = condition.unconditional or student.metadata.get("unconditional", "student")
        encoder = PromptEncoder(student, self.backbone, unconditional)
        pipeline = self.backbone.pipeline(self.sampler.scheduler)
        pipeline.set_progress_bar_config(disable=True)
        prompts = self.eval_set.captions[self.pack.code]

        def generate(batch, seeds):
            positive, negative = encoder.encode([prompts[i] for i in batch], "")
            return run_pipeline(pipeline, self.sampler, seeds, self.backbone.resolution,
                                prompt_embeds=positive, negative_prompt_embeds=negative)

        return self._batched(generate)

    def _batched(self, generate, batch_size: int = 60) -> np.ndarray:
        images = []
        indices = list(range(len(self.eval_set.scenes)))
        for start in range(0, len(indices), batch_size):
            batch = indices[start:start + batch_size]
            seeds = [self.eval_set.seeds[i] for i in batch]
            images += [np.asarray(image.convert("RGB")) for image in generate(batch, seeds)]
        return np.stack(images)


def _save_untrained(recipe, pack, output: Path) -> Path:
    from polyiap.train.setup import load_inputs, make_student

    student = make_student(recipe, pack, load_inputs(recipe, pack))
    student.save(output / "student")
    return output


def _losses(run: Path) -> dict:
    """Return the first and last logged training loss and the last held-out pivot loss of a run."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [row["train_loss"] for row in rows if "train_loss" in row]
    heldout = [row["heldout_pivot_loss"] for row in rows if "heldout_pivot_loss" in row]
    return {"first_train_loss": train[0] if train else None, "last_train_loss": train[-1] if train else None,
            "first_heldout_pivot_loss": heldout[0] if heldout else None,
            "last_heldout_pivot_loss": heldout[-1] if heldout else None}


def machine() -> str:
    """Describe this machine for the report."""
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads: {torch.get_num_threads()}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}")
