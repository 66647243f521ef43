"""The training loop: one function that runs unchanged on a CPU, one GPU or N GPUs via Accelerate.

    polyiap transfer --lang zh --recipe demo --output runs/demo
    accelerate launch --num_processes 8 -m polyiap transfer --lang zh --data triplets.jsonl --output runs/zh

Randomness is derived from (seed, micro-batch index, process) at every micro-batch, and the data order
from (seed, epoch), so a run resumed from a checkpoint continues exactly where it stopped.
"""

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from polyiap.data import TripletDataset
from polyiap.data.streaming import ShardStream
from polyiap.encoders import StudentEncoder
from polyiap.errors import PolyiapError
from polyiap.packs import LanguagePack
from polyiap.pivot import LOSSES, LossInputs, PivotContext, pivot_processors
from polyiap.recipes import Recipe
from polyiap.train.heldout import HeldOutSet, mean_teacher_embedding
from polyiap.train.latents_cache import (CachedTripletDataset, check_latents_cache, image_keys,
                                         open_latents_cache)
from polyiap.train.teacher_cache import CachedTeacher, caption_keys, open_teacher_cache
from polyiap.train.plots import plot_losses
from polyiap.train.progress import ProgressCallback, SilentProgress
from polyiap.train.run_folder import STATE_FILE, RunFolder, replace_dir, restore_rng_state, rng_state
from polyiap.train.samples import sample_grid, save_png
from polyiap.train.setup import (apply_memory_options, environment, load_inputs, make_optimizer, make_student,
                                 micro_batch_size)

logger = logging.getLogger(__name__)

MEAN_EMBEDDING_CAPTIONS = 4096  # captions averaged for the mean-embedding baseline
SHARDS_READ = "shards-read.tsv"  # which shards each process and data loader worker opened, per epoch


@dataclass
class Position:
    """Training position: optimizer steps done and the next micro-batch of the current epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    micro_batches: int = 0


def transfer(recipe: Recipe, pack: LanguagePack, output: Path, resume: str | None = None,
             progress: ProgressCallback | None = None, command: list[str] | None = None) -> Path:
    """Train a student for ``pack``'s language as configured by ``recipe`` and return the final student folder."""
    from accelerate import Accelerator

    run = RunFolder(output)
    accelerator = Accelerator(gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
                              mixed_precision=recipe.train.mixed_precision)
    progress = progress if progress is not None and accelerator.is_main_process else SilentProgress()
    checkpoint = run.find_checkpoint(resume) if resume else None
    config = _resolved_config(recipe, pack, command)
    if checkpoint is not None:
        _check_same_config(run, config)
    elif accelerator.is_main_process:
        run.check_new()
    micro_batch = micro_batch_size(recipe, accelerator.num_processes)
    if recipe.train.mixed_precision != "no" and not torch.cuda.is_available():
        logger.warning("train.mixed_precision=%s on a CPU: autocast runs, but it is usually slower than float32 "
                       "there", recipe.train.mixed_precision)

    inputs = load_inputs(recipe, pack)
    # Caches are checked before the run folder is created, so a rejected cache leaves nothing behind.
    train_set = _train_set(recipe, inputs.backbone, inputs)
    cached_teacher = _teacher(recipe, inputs.backbone, inputs)
    if checkpoint is None and accelerator.is_main_process:
        run.prepare_new()
        run.write_config(config)
    accelerator.wait_for_everyone()

    student = StudentEncoder.load(checkpoint / "student") if checkpoint else make_student(recipe, pack, inputs)
    student = apply_memory_options(recipe, student)
    optimizer, lr_scheduler = make_optimizer(recipe, student)
    position = Position()
    if checkpoint is not None:
        position = _load_checkpoint(checkpoint, optimizer, lr_scheduler, accelerator.process_index)
        progress.on_message(f"resumed from {checkpoint} at step {position.step}")
    # The LR scheduler is stepped by hand once per optimizer step: Accelerate's wrapper would step it once
    # per process, but train.max_steps and warmup_steps count global optimizer steps.
    student, optimizer = accelerator.prepare(student, optimizer)
    backbone = inputs.backbone.to(accelerator.device)

    context = PivotContext(compare=recipe.loss.compare, queries=recipe.loss.queries,
                           fused_kv=recipe.loss.fused_kv)
    with pivot_processors(backbone.cross_attention_layers(), context):
        loop = _Loop(recipe, pack, run, accelerator, backbone, student, optimizer, lr_scheduler, context,
                     inputs, micro_batch, progress, train_set, cached_teacher)
        loop.run(position)
    return run.student_dir


def _resolved_config(recipe: Recipe, pack: LanguagePack, command: list[str] | None) -> dict:
    return {"language": pack.code, "recipe": recipe.model_dump(), "command": command or [],
            "environment": environment()}


def _check_same_config(run: RunFolder, config: dict) -> None:
    """Raise unless a resumed run has the saved language and recipe; only train.max_steps may change."""
    saved = run.read_config()

    def comparable(entry: dict) -> tuple:
        recipe = dict(entry.get("recipe") or {})
        recipe["train"] = {k: v for k, v in (recipe.get("train") or {}).items() if k != "max_steps"}
        return entry.get("language"), recipe

    if comparable(saved) != comparable(config):
        raise PolyiapError(f"--resume: the language or recipe differs from the one in {run.config_file}; resume "
                           "with the same --lang, --recipe, --set and --data (only train.max_steps may change)")


def _load_checkpoint(folder: Path, optimizer, lr_scheduler, process_index: int) -> Position:
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
    lr_scheduler.load_state_dict(torch.load(folder / "lr_scheduler.pt", weights_only=False))
    rng_file = folder / f"rng-{process_index}.pt"
    if rng_file.exists():
        restore_rng_state(torch.load(rng_file, weights_only=False))
    return Position(**json.loads((folder / STATE_FILE).read_text()))


class _Loop:
    """The state of one training run between steps."""

    def __init__(self, recipe: Recipe, pack: LanguagePack, run: RunFolder, accelerator, backbone, student,
                 optimizer, lr_scheduler, context: PivotContext, inputs, micro_batch: int,
                 progress: ProgressCallback, train_set, cached_teacher: CachedTeacher | None):
        self.recipe, self.pack, self.folder, self.accelerator = recipe, pack, run, accelerator
        self.backbone, self.student, self.optimizer, self.lr_scheduler = backbone, student, optimizer, lr_scheduler
        self.context, self.micro_batch, self.progress = context, micro_batch, progress
        self.inputs_resolution = inputs.resolution
        self.train_set, self.cached_teacher = train_set, cached_teacher
        self.encode_student = torch.compile(student) if recipe.train.compile else student
        self.objective = LOSSES.get(recipe.loss.name)(backbone, context, pooled_weight=recipe.loss.pooled_weight)
        self.noise_scheduler = backbone.noise_scheduler()
        heldout = inputs.heldout[:recipe.data.heldout_max_samples]
        self.heldout = HeldOutSet(heldout, backbone, inputs.resolution, recipe.train.seed + 1,
                                  batch_size=max(micro_batch, 8)) if heldout else None
        logger.info("held-out evaluation on %d of %d held-out triplets", len(heldout), len(inputs.heldout))
        captions = [english for english, _ in inputs.caption_pairs(MEAN_EMBEDDING_CAPTIONS)]
        self.mean_embedding = mean_teacher_embedding(backbone, captions) if self.heldout else None
        self.window: list[float] = []
        self.window_start = time.perf_counter()

    def run(self, position: Position) -> None:
        recipe, accelerator = self.recipe, self.accelerator
        if accelerator.is_main_process:
            self.folder.truncate_metrics(position.step)
        self.progress.on_start(recipe.train.max_steps, position.step)
        if position.step == 0:
            self._evaluate(0)
        self.student.train()

        while position.step < recipe.train.max_steps:
            for batch in self._epoch_batches(position):
                if self._train_micro_batch(batch, position):
                    self._after_step(position)
                if position.step >= recipe.train.max_steps:
                    break
            else:
                position.epoch, position.batch_in_epoch = position.epoch + 1, 0

        self._finish(position)
        self.progress.on_end()

    def _epoch_batches(self, position: Position):
        """Yield the rest of the current epoch's micro-batches for this process."""
        seed = self.recipe.train.seed
        if isinstance(self.train_set, ShardStream):
            yield from self._stream_batches(position)
            return
        order = np.random.default_rng([seed, position.epoch]).permutation(len(self.train_set))
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        per_process = len(order) // world // self.micro_batch * self.micro_batch
        mine = order[rank::world][:per_process]
        start = position.batch_in_epoch * self.micro_batch
        workers = self.recipe.train.num_workers
        loader = DataLoader(Subset(self.train_set, mine[start:].tolist()), batch_size=self.micro_batch,
                            num_workers=workers, pin_memory=torch.cuda.is_available(), drop_last=True,
                            prefetch_factor=self.recipe.train.prefetch_factor if workers else None)
        yield from loader

    def _stream_batches(self, position: Position):
        train = self.recipe.train
        yield from self.train_set.batches(
            self.inputs_resolution, train.seed, position.epoch, self.accelerator.process_index,
            self.accelerator.num_processes, self.micro_batch, position.batch_in_epoch, train.num_workers,
            train.prefetch_factor, trace=self.folder.root / SHARDS_READ)

    def _train_micro_batch(self, batch: dict, position: Position) -> bool:
        """Run one forward/backward pass; return True when it completed an optimizer step."""
        accelerator = self.accelerator
        seed = [self.recipe.train.seed, position.micro_batches, accelerator.process_index]
        torch.manual_seed(int(np.random.default_rng(seed).integers(2**62)))
        generator = torch.Generator().manual_seed(int(np.random.default_rng(seed + [1]).integers(2**62)))
        position.micro_batches += 1
        position.batch_in_epoch += 1

        with accelerator.accumulate(self.student), accelerator.autocast():
            inputs = self._loss_inputs(batch, generator)
            loss = self.objective(inputs)
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.recipe.train.max_grad_norm:
                accelerator.clip_grad_norm_(self.student.parameters(), self.recipe.train.max_grad_norm)
            self.optimizer.step()
            if accelerator.sync_gradients:
                self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.window.append(loss.detach().item())
        return accelerator.sync_gradients

    def _loss_inputs(self, batch: dict, generator: torch.Generator) -> LossInputs:
        device = self.accelerator.device
        english, target = list(batch["english"]), list(batch["target"])
        empty = torch.rand(len(english), generator=generator) < self.recipe.data.empty_prompt_rate
        for index in torch.nonzero(empty).flatten().tolist():
            english[index] = target[index] = ""

        if "latent_mean" in batch:
            mean, std = batch["latent_mean"].to(device), batch["latent_std"].to(device)
            latents = self.backbone.latents_from_posterior(mean, std, generator=_on(generator, device))
        else:
            latents = self.backbone.encode_images(batch["pixels"].to(device), generator=_on(generator, device))
        noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(english),),
                                  generator=generator).to(device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        student = self.accelerator.unwrap_model(self.student)
        tokens = {k: v.to(device) for k, v in student.tokenize(target).items()}
        student_conditioning = self.encode_student(**tokens, conditioning=True)
        if self.cached_teacher is not None:
            frozen_dtype = next(self.backbone.denoiser().parameters()).dtype
            teacher = self.cached_teacher.encode(english, device, frozen_dtype)
        else:
            teacher = self.backbone.encode_teacher(english)
        return LossInputs(latents, noise, timesteps, noisy, teacher, student_conditioning)

    def _after_step(self, position: Position) -> None:
        position.step += 1
        step, train = position.step, self.recipe.train
        record = {}
        if step % train.log_every == 0 or step == train.max_steps:
            record = self._train_metrics()
        if step % train.eval_every == 0 or step == train.max_steps:
            record.update(self._heldout_metrics())
        if record and self.accelerator.is_main_process:
            self.folder.append_metrics({"step": step, **record})
            if "heldout_pivot_loss" in record:
                plot_losses(self.folder.read_metrics(), self.folder.root / "loss.png")
        self.progress.on_step(step, record)
        if step % train.checkpoint_every == 0 or step == train.max_steps:
            self._save_checkpoint(position)
        if self.recipe.samples.every and step % self.recipe.samples.every == 0:
            self._write_samples(step)

    def _train_metrics(self) -> dict:
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        losses = self.accelerator.gather_for_metrics(torch.tensor(self.window, device=self.accelerator.device))
        record = {"train_loss": float(losses.mean()), "lr": self.lr_scheduler.get_last_lr()[0],
                  "samples_per_s": len(losses) * self.micro_batch / elapsed}
        self.window, self.window_start = [], time.perf_counter()
        return record

    def _heldout_metrics(self) -> dict:
        if self.heldout is None:
            return {}
        student = self.accelerator.unwrap_model(self.student)
        return {"heldout_pivot_loss": self.heldout.loss(self.context, student),
                "heldout_mean_embedding_loss": self.heldout.constant_embedding_loss(self.context,
                                                                                    self.mean_embedding)}

    def _evaluate(self, step: int) -> None:
        record = self._heldout_metrics()
        if record and self.accelerator.is_main_process:
            self.folder.append_metrics({"step": step, **record})
        self.progress.on_step(step, record)

    def _save_checkpoint(self, position: Position) -> None:
        """Write ``checkpoints/step-N`` atomically, then prune to ``checkpoints_total_limit``."""
        accelerator = self.accelerator
        final = self.folder.checkpoints / f"step-{position.step:07d}"
        staging = self.folder.checkpoints / f".staging-step-{position.step:07d}"
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            self.accelerator.unwrap_model(self.student).save(staging / "student")
            torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
            torch.save(self.lr_scheduler.state_dict(), staging / "lr_scheduler.pt")
        accelerator.wait_for_everyone()
        torch.save(rng_state(), staging / f"rng-{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (staging / STATE_FILE).write_text(json.dumps(position.__dict__) + "\n")
            replace_dir(staging, final)
            self._prune_checkpoints()
        accelerator.wait_for_everyone()

    def _prune_checkpoints(self) -> None:
        limit = self.recipe.train.checkpoints_total_limit
        if limit is None:
            return
        for old in self.folder.checkpoint_dirs()[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def _write_samples(self, step: int) -> None:
        samples = self.recipe.samples
        prompts = self.pack.sample_prompts[:samples.num_prompts]
        if not prompts or not self.accelerator.is_main_process or not hasattr(self.backbone, "pipeline"):
            return
        student = self.accelerator.unwrap_model(self.student)
        grid = sample_grid(self.backbone, student, prompts, samples.scheduler, samples.steps, samples.guidance,
                           samples.unconditional, samples.seed)
        save_png(grid, self.folder.samples_dir / f"step-{step:07d}.png")

    def _finish(self, position: Position) -> None:
        if not self.accelerator.is_main_process:
            return
        staging = Path(tempfile.mkdtemp(prefix=".student-", dir=self.folder.root))
        self.accelerator.unwrap_model(self.student).save(staging)
        replace_dir(staging, self.folder.student_dir)
        if self.recipe.samples.num_prompts and not self.recipe.samples.every:
            self._write_samples(position.step)
        plot_losses(self.folder.read_metrics(), self.folder.root / "loss.png")
        logger.info("student written to %s", self.folder.student_dir)


def _train_set(recipe: Recipe, backbone, inputs) -> TripletDataset | CachedTripletDataset | ShardStream:
    """Return the training triplets with pixels, or with cached posteriors when the recipe names a cache."""
    if inputs.stream is not None:
        return inputs.stream
    if recipe.data.latents_cache is None:
        return TripletDataset(inputs.train, inputs.resolution)
    data_root = Path(recipe.data.source).parent
    cache = open_latents_cache(Path(recipe.data.latents_cache))
    check_latents_cache(cache, backbone, inputs.resolution, image_keys(inputs.train, data_root), data_root)
    logger.info("reading VAE posteriors of %d images from the latents cache %s", len(cache.names), cache.folder)
    return CachedTripletDataset(inputs.train, cache, data_root)


def _teacher(recipe: Recipe, backbone, inputs) -> CachedTeacher | None:
    """Return the teacher-embedding cache the recipe names, checked against this run, or None."""
    if recipe.data.teacher_cache is None:
        return None
    cache = open_teacher_cache(Path(recipe.data.teacher_cache))
    teacher = CachedTeacher(cache, backbone, caption_keys(inputs.train))
    logger.info("reading teacher embeddings of %d captions from the cache %s", len(cache.names), cache.folder)
    return teacher


def _on(generator: torch.Generator, device: torch.device) -> torch.Generator | None:
    """The CPU generator when the device is the CPU; VAE sampling on a GPU then uses the global RNG."""
    return generator if torch.device(device).type == "cpu" else None
