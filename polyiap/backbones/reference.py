"""Configurations of the model families as published (``configs/*.json``) and the facts they imply.

Each file records one checkpoint's denoiser configuration as its ``config.json`` states it, the widths
of its text encoders and its pooled embedding. Building the denoiser on the meta device allocates no
weights, so the cross-attention layers of a real configuration can be counted without a download.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from polyiap.errors import PolyiapError

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class ReferenceConfig:
    """One family's configuration.

    Args:
        name: the file stem in ``configs/``.
        family: the backbone family that loads such a checkpoint.
        checkpoint: the hub id of the checkpoint whose configuration this is.
        pipeline: the diffusers pipeline class of the checkpoint.
        text_encoders: per text encoder, its class and output width (``hidden_size``).
        pooled_dim: width of the pooled text embedding, or None.
        max_length: tokens per caption of the teacher's tokenizer.
        denoiser_class: the diffusers class of the denoiser.
        denoiser: the denoiser's configuration.
        prediction_type: what the denoiser predicts (the scheduler's ``prediction_type``).
        build: sizes of the other parts, for configurations that tests build with random weights.
    """

    name: str
    family: str
    checkpoint: str
    pipeline: str
    text_encoders: tuple[dict, ...]
    pooled_dim: int | None
    max_length: int
    denoiser_class: str
    denoiser: dict
    prediction_type: str = "epsilon"
    build: dict | None = None

    @property
    def context_dim(self) -> int:
        """Width of the text states the denoiser reads: the text encoders' widths side by side."""
        return sum(encoder["hidden_size"] for encoder in self.text_encoders)

    def build_denoiser(self) -> nn.Module:
        """Return the denoiser on the meta device: every layer, no weights."""
        import diffusers
        from accelerate import init_empty_weights

        with init_empty_weights():
            return getattr(diffusers, self.denoiser_class)(**self.denoiser)


def reference_names() -> list[str]:
    return sorted(path.stem for path in CONFIG_DIR.glob("*.json"))


def load_reference(name: str) -> ReferenceConfig:
    """Read ``configs/<name>.json``."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise PolyiapError(f"no backbone configuration {name!r}; available: {', '.join(reference_names())}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    fields = {key: raw[key] for key in ReferenceConfig.__dataclass_fields__ if key in raw}
    fields["text_encoders"] = tuple(fields["text_encoders"])
    return ReferenceConfig(name=name, **fields)
