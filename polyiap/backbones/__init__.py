"""Backbone adapters: load a frozen model family and expose a uniform interface."""

from polyiap.backbones import miniworld, pixart, sd1, sd2, sdxl, tiny, tiny_families  # noqa: F401 - registers the adapters
from polyiap.backbones.base import Backbone, TextConditioning
from polyiap.backbones.detect import detect_family
from polyiap.backbones.registry import BACKBONES

__all__ = ["AUTO", "BACKBONES", "Backbone", "TextConditioning", "load_backbone"]

AUTO = "auto"  # the family read from the folder's model_index.json


def load_backbone(family: str, source: str | None, revision: str | None = None) -> Backbone:
    """Load a frozen backbone of the registered ``family`` (or of the folder's own with ``auto``) from a folder or hub id."""
    if family == AUTO:
        from polyiap.errors import ModelNotAvailableError
        from polyiap.hub import resolve_model_source

        if source is None:
            raise ModelNotAvailableError("backbone.family is `auto` but backbone.source is not set; set it to a "
                                         "diffusers pipeline folder or hub id")
        family = detect_family(resolve_model_source(source, "backbone", "backbone.source", revision))
    return BACKBONES.get(family).load(source, revision)
