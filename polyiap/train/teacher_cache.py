"""A cache of the teacher's encodings of the English captions, so that training skips the teacher's text encoder.

One entry per distinct English caption of the data, plus the empty caption that empty-prompt training
uses. It is keyed by the text encoders' weights, the tokenizer's vocabulary and the sequence length.
"""

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch

from polyiap.backbones import Backbone, TextConditioning
from polyiap.data import Triplet
from polyiap.train.latents_cache import weights_sha256
from polyiap.train.tensor_cache import CacheReader, TensorCache, build_cache

KIND = "teacher"
COMMAND = "polyiap cache teacher"
FORMAT = 1


def cache_key(backbone: Backbone) -> dict:
    """Return what the teacher's encodings depend on: text encoder weights, tokenizer, sequence length."""
    encoders = [m for name, m in sorted(backbone.frozen_modules().items()) if name.startswith("text_encoder")]
    tokenizer = getattr(backbone, "tokenizer", None)
    vocabulary = json.dumps(sorted(tokenizer.get_vocab().items())) if tokenizer is not None else ""
    second = getattr(backbone, "tokenizer_2", None)  # SDXL's second text encoder has its own tokenizer
    if second is not None:
        vocabulary += json.dumps(sorted(second.get_vocab().items()))
    return {"format": FORMAT, "text_encoder_sha256": weights_sha256(*encoders),
            "tokenizer_sha256": hashlib.sha256(vocabulary.encode()).hexdigest(), "max_length": backbone.max_length}


def caption_keys(triplets: list[Triplet]) -> list[str]:
    """Return the sorted, distinct English captions of ``triplets`` and the empty caption."""
    return sorted({t.english for t in triplets} | {""})


def open_teacher_cache(folder: Path) -> TensorCache:
    return TensorCache.open(folder, KIND, COMMAND)


def build_teacher_cache(backbone: Backbone, captions: list[str], output: Path, shard_size: int = 4096,
                        batch_size: int = 64, dtype: torch.dtype = torch.float32,
                        on_progress: Callable[[int, int], None] = lambda done, total: None) -> TensorCache:
    """Encode every caption with the teacher into ``output``, resuming an interrupted build."""
    fields = ["sequence"]
    if backbone.pooled_dim:
        fields.append("pooled")
    if backbone.uses_text_mask:
        fields.append("mask")

    def encode(names: list[str]) -> dict[str, torch.Tensor]:
        conditioning = backbone.encode_teacher(names)
        return {field: getattr(conditioning, field) for field in fields}

    return build_cache(output, KIND, cache_key(backbone), captions, fields, encode, shard_size, batch_size, dtype,
                       on_progress)


class CachedTeacher:
    """Looks up the teacher's encoding of captions in a checked cache."""

    def __init__(self, cache: TensorCache, backbone: Backbone, captions: list[str]):
        cache.check(cache_key(backbone), captions, COMMAND)
        self.reader = CacheReader(cache)

    def encode(self, captions: list[str], device: torch.device, dtype: torch.dtype) -> TextConditioning:
        entries = [self.reader.get(caption) for caption in captions]
        fields = {field: torch.stack([e[field] for e in entries]).to(device, dtype) for field in entries[0]}
        return TextConditioning(fields["sequence"], fields.get("pooled"), fields.get("mask"))
