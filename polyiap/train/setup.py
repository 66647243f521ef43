"""Everything a run needs before its first step: models, data, held-out set, optimizer."""

import logging
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import torch

from polyiap import __version__
from polyiap.backbones import Backbone, load_backbone
from polyiap.data import Triplet, TripletFields, read_triplets, split_by_image
from polyiap.data.streaming import ShardStream, is_shard_folder, open_shard_stream
from polyiap.encoders import (StudentEncoder, build_student, check_student, check_unconditional,
                              resolve_student_source)
from polyiap.errors import ConfigError, DataError, ModelNotAvailableError
from polyiap.hub import resolve_model_source
from polyiap.packs import LanguagePack, normalize_text
from polyiap.recipes import Recipe

logger = logging.getLogger(__name__)


@dataclass
class RunInputs:
    backbone: Backbone
    train: list[Triplet]
    heldout: list[Triplet]
    resolution: int
    max_length: int
    stream: ShardStream | None = None  # set when the data is a folder of shards; ``train`` is then empty

    def caption_pairs(self, limit: int | None = None) -> list[tuple[str, str]]:
        """Return up to ``limit`` (English, target) caption pairs of the training data."""
        if self.stream is not None:
            return self.stream.captions[:limit]
        return [(t.english, t.target) for t in self.train[:limit]]


def load_inputs(recipe: Recipe, pack: LanguagePack) -> RunInputs:
    """Load the backbone and the data, failing fast on missing models before reading any data."""
    check_models_available(recipe)
    backbone = load_backbone(recipe.backbone.family, recipe.backbone.source, recipe.backbone.revision)
    max_length = recipe.student.max_length or pack.max_length
    check_unconditional(max_length, backbone.max_length, recipe.samples.unconditional)
    resolution = recipe.data.resolution or backbone.resolution
    if recipe.data.source is not None and is_shard_folder(recipe.data.source):
        stream = open_recipe_shards(recipe, pack)
        return RunInputs(backbone, [], stream.heldout, resolution, max_length, stream)
    triplets = read_recipe_triplets(recipe, pack)
    train, heldout = split_by_image(triplets, recipe.data.heldout_images, recipe.train.seed)
    logger.info("%d training and %d held-out triplets (%d held-out images)", len(train), len(heldout),
                len({t.image for t in heldout}))
    return RunInputs(backbone, train, heldout, resolution, max_length)


def read_recipe_triplets(recipe: Recipe, pack: LanguagePack) -> list[Triplet]:
    """Read the recipe's triplet file with the pack's normalisation of the target captions."""
    if recipe.data.source is None:
        raise DataError(f"recipe {recipe.name!r} names no training data (data.source is empty); pass --data PATH "
                        "with a JSONL or CSV triplet file or a folder of shards from `polyiap prepare`")
    fields = TripletFields(recipe.data.image_field, recipe.data.english_field,
                           recipe.data.target_field or pack.code)
    triplets, _ = read_triplets(recipe.data.source, fields, recipe.data.format,
                                lambda text: normalize_text(text, pack.normalization))
    return triplets


def open_recipe_shards(recipe: Recipe, pack: LanguagePack) -> ShardStream:
    """Open the recipe's folder of WebDataset shards for streaming, with the pack's normalisation."""
    data = recipe.data
    for key in ("latents_cache", "teacher_cache"):
        if getattr(data, key) is not None:
            raise ConfigError(f"recipe {recipe.name}", f"data.{key}",
                              f"caches are keyed by image files and captions, which a shard folder ({data.source}) "
                              "streams instead of listing", f"remove data.{key} or train from a JSONL/CSV file")
    fields = TripletFields(data.image_field, data.english_field, data.target_field or pack.code)
    return open_shard_stream(data.source, fields, lambda text: normalize_text(text, pack.normalization),
                             data.heldout_images, data.heldout_max_samples)


def check_models_available(recipe: Recipe) -> None:
    """Resolve every model the recipe names before loading any, and report all that are missing at once."""
    checks = [lambda: resolve_student_source(recipe.student)]
    if recipe.backbone.source:
        checks.insert(0, lambda: resolve_model_source(recipe.backbone.source, "backbone", "backbone.source",
                                                      recipe.backbone.revision))
    missing = []
    for check in checks:
        try:
            check()
        except ModelNotAvailableError as error:
            missing.append(str(error))
    if missing:
        raise ModelNotAvailableError("; ".join(missing))


def micro_batch_size(recipe: Recipe, num_processes: int) -> int:
    """Samples per process per forward pass; the recipe's batch is global and must divide evenly."""
    train = recipe.train
    divisor = num_processes * train.gradient_accumulation_steps
    if train.batch_size % divisor:
        raise ConfigError("recipe", "train.batch_size",
                          f"{train.batch_size} is not divisible by processes x gradient_accumulation_steps "
                          f"({num_processes} x {train.gradient_accumulation_steps})",
                          f"use a multiple of {divisor}")
    return train.batch_size // divisor


def make_student(recipe: Recipe, pack: LanguagePack, inputs: RunInputs) -> StudentEncoder:
    backbone = recipe.backbone
    metadata = {"language": pack.code, "normalization": pack.normalization.model_dump(),
                "unconditional": recipe.samples.unconditional,
                "backbone": {"family": inputs.backbone.family, "source": backbone.source, "revision": backbone.revision},
                "sampler": {"scheduler": recipe.samples.scheduler, "steps": recipe.samples.steps,
                            "guidance": recipe.samples.guidance}}
    frozen = inputs.backbone
    student = build_student(recipe.student, inputs.max_length, frozen.context_dim,
                            [target for _, target in inputs.caption_pairs()], recipe.train.seed, metadata,
                            frozen.pooled_dim, frozen.uses_text_mask)
    check_student(student, frozen.context_dim, frozen.pooled_dim)
    return student


def apply_memory_options(recipe: Recipe, student: StudentEncoder) -> StudentEncoder:
    """Enable gradient checkpointing in the student's encoder when the recipe sets it."""
    if not recipe.student.gradient_checkpointing:
        return student
    encoder = student.encoder
    if not getattr(encoder, "supports_gradient_checkpointing", False):
        raise ConfigError(f"recipe {recipe.name}", "student.gradient_checkpointing",
                          f"{type(encoder).__name__} does not support gradient checkpointing",
                          "set student.gradient_checkpointing=false or use a transformers encoder that supports it")
    enable_gradient_checkpointing(encoder)
    return student


def enable_gradient_checkpointing(encoder) -> None:
    """Turn on non-reentrant activation checkpointing of a transformers encoder (either method name)."""
    if hasattr(encoder, "activation_checkpointing_enable"):  # the name since transformers 5
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def make_optimizer(recipe: Recipe, student: StudentEncoder):
    from diffusers.optimization import get_scheduler

    train = recipe.train
    optimizer = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=train.lr, weight_decay=train.weight_decay,
        betas=(train.adam_beta1, train.adam_beta2), eps=train.adam_epsilon)
    scheduler = get_scheduler(train.lr_scheduler, optimizer, num_warmup_steps=train.warmup_steps,
                              num_training_steps=train.max_steps)
    return optimizer, scheduler


def environment() -> dict:
    """Versions recorded in ``config.yaml`` so a run can be reproduced."""
    packages = {}
    for name in ("torch", "diffusers", "transformers", "accelerate", "tokenizers"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"polyiap": __version__, "python": platform.python_version(), **packages}
