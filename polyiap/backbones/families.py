"""A summary of each registered backbone family, from its configuration in ``configs/``."""

from dataclasses import dataclass

from polyiap.backbones.base import cross_attention_modules
from polyiap.backbones.reference import load_reference
from polyiap.backbones.registry import BACKBONES


@dataclass
class FamilyInfo:
    """One row of `polyiap backbones list`; the numbers are None for a family without a configuration file."""

    family: str
    description: str
    checkpoint: str | None = None
    context_dim: int | None = None
    pooled_dim: int | None = None
    cross_attention_layers: int | None = None


def family_info(family: str) -> FamilyInfo:
    """Return the summary of ``family``, counting cross-attention layers on a meta-device build of its configuration."""
    adapter = BACKBONES.get(family)
    description = (adapter.__doc__ or "").strip().splitlines()[0]
    if adapter.reference is None:
        return FamilyInfo(family, description)
    config = load_reference(adapter.reference)
    layers = cross_attention_modules(config.build_denoiser())
    return FamilyInfo(family, description, config.checkpoint, config.context_dim, config.pooled_dim, len(layers))


def list_families() -> list[FamilyInfo]:
    return [family_info(name) for name in BACKBONES.names()]
