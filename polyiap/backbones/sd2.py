"""Stable Diffusion 2.x: OpenCLIP ViT-H text encoder (1024 wide), UNet with 16 cross-attention layers.

The text encoder stored in SD 2.x folders already ends at OpenCLIP's penultimate layer (23 of 24
layers, then the final layer norm), and the diffusers pipeline reads its last output, exactly as for
SD 1.x; so the SD 1.x encoding applies unchanged. The 768-pixel checkpoints predict v instead of the
noise: the samplers and the plain denoising loss read ``prediction_type`` from the scheduler config.
"""

from polyiap.backbones.registry import BACKBONES
from polyiap.backbones.sd1 import SD1Backbone


@BACKBONES.register("sd2")
class SD2Backbone(SD1Backbone):
    """A diffusers Stable Diffusion 2.x folder (same layout and pipeline as SD 1.x)."""

    family = "sd2"
    reference = "sd21"
    pipeline_family = "sd2"
