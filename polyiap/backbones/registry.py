"""The backbone registry; adapters register themselves when `polyiap.backbones` is imported."""

from polyiap.backbones.base import Backbone
from polyiap.registry import Registry

BACKBONES: Registry[type[Backbone]] = Registry("backbone", base=Backbone)
