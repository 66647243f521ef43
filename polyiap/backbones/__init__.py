"""Backbone adapters: load a frozen model family and expose a uniform interface."""

from polyiap.backbones import miniworld, sd1, tiny  # noqa: F401 - registers the adapters
from polyiap.backbones.base import Backbone, TextConditioning
from polyiap.backbones.registry import BACKBONES

__all__ = ["BACKBONES", "Backbone", "TextConditioning", "load_backbone"]


def load_backbone(family: str, source: str | None, revision: str | None = None) -> Backbone:
    """Load a frozen backbone of the registered ``family`` from a folder or hub id."""
    return BACKBONES.get(family).load(source, revision)
