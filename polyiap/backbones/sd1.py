"""Stable Diffusion 1.x: CLIP ViT-L/14 text encoder (768 wide, last layer), UNet with 16 cross-attention layers."""

import json
import logging
from pathlib import Path

import torch
from torch import nn

from polyiap.backbones.base import Backbone, TextConditioning
from polyiap.backbones.detect import check_pipeline_class
from polyiap.backbones.registry import BACKBONES
from polyiap.errors import ModelNotAvailableError
from polyiap.hub import resolve_model_source

logger = logging.getLogger(__name__)

_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


@BACKBONES.register("sd1")
class SD1Backbone(Backbone):
    """A diffusers Stable Diffusion 1.x folder (``model_index.json`` with unet, vae, text_encoder, ...)."""

    family = "sd1"
    reference = "sd15"
    pipeline_family = "sd1"  # the family whose pipeline classes a folder must have

    def __init__(self, source: Path, tokenizer, text_encoder, vae, unet, scheduler_config: dict):
        self.source = source
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.vae = vae
        self.unet = unet
        self.scheduler_config = scheduler_config
        self.context_dim = unet.config.cross_attention_dim
        self.max_length = tokenizer.model_max_length
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.resolution = unet.config.sample_size * self.vae_scale_factor
        self.vae_scaling_factor = vae.config.scaling_factor
        for module in self.frozen_modules().values():
            module.requires_grad_(False)
            module.eval()

    @classmethod
    def load(cls, source: str | None, revision: str | None = None) -> "SD1Backbone":
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        if source is None:
            raise ModelNotAvailableError("backbone.source is not set; set it to a diffusers folder or hub id")
        folder = resolve_model_source(source, "backbone", "backbone.source", revision)
        check_pipeline_folder(folder, _SUBFOLDERS)
        check_pipeline_class(folder, cls.pipeline_family)
        logger.info("loading %s backbone from %s", cls.family, folder)
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        return cls(
            folder,
            CLIPTokenizer.from_pretrained(folder / "tokenizer"),
            CLIPTextModel.from_pretrained(folder / "text_encoder"),
            AutoencoderKL.from_pretrained(folder / "vae"),
            UNet2DConditionModel.from_pretrained(folder / "unet"),
            scheduler_config,
        )

    def encode_teacher(self, captions: list[str]) -> TextConditioning:
        tokens = self.tokenizer(captions, padding="max_length", max_length=self.max_length,
                                truncation=True, return_tensors="pt")
        device = self.text_encoder.device
        with torch.no_grad():
            # SD 1.x pipelines pass no attention mask to CLIP and read the last layer.
            states = self.text_encoder(tokens.input_ids.to(device))[0]
        return TextConditioning(states)

    def cross_attention_layers(self) -> dict[str, nn.Module]:
        return {name: module for name, module in self.unet.named_modules()
                if getattr(module, "is_cross_attention", False)}

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, conditioning: TextConditioning) -> torch.Tensor:
        return self.unet(z_t, t, encoder_hidden_states=conditioning.sequence).sample

    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            posterior = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist
        return posterior.mean, posterior.std

    def latent_encoder(self) -> nn.Module:
        return self.vae

    def denoiser(self) -> nn.Module:
        return self.unet

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {"text_encoder": self.text_encoder, "vae": self.vae, "unet": self.unet}

    def pipeline(self, scheduler_name: str):
        """Return a diffusers text-to-image pipeline on the frozen modules with the named sampler."""
        from diffusers import StableDiffusionPipeline

        from polyiap.backbones.samplers import make_sampler

        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=make_sampler(scheduler_name, self.scheduler_config),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )


def check_pipeline_folder(folder: Path, subfolders: tuple[str, ...]) -> None:
    """Raise when ``folder`` lacks a part of the diffusers pipeline layout."""
    missing = [name for name in subfolders if not (folder / name).is_dir()]
    if missing:
        raise ModelNotAvailableError(
            f"{folder} is not a diffusers pipeline folder: missing {', '.join(missing)}; expected the "
            f"layout written by `DiffusionPipeline.save_pretrained` ({', '.join(subfolders)} subfolders)")
