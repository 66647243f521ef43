"""Stable Diffusion XL: two CLIP text encoders (768 + 1280 = 2048-wide sequence, 1280-wide pooled embedding).

The UNet reads the two encoders' penultimate hidden states side by side through its 70 cross-attention
layers, and the pooled embedding of the second encoder together with six size conditions ("time ids":
original size, crop top-left corner, target size) through its time embedding.
"""

import json
import logging
from pathlib import Path

import torch

from polyiap.backbones.base import Backbone, TextConditioning
from polyiap.backbones.detect import check_pipeline_class
from polyiap.backbones.registry import BACKBONES
from polyiap.backbones.sd1 import check_pipeline_folder
from polyiap.errors import IncompatibleModelsError, ModelNotAvailableError
from polyiap.hub import resolve_model_source

logger = logging.getLogger(__name__)

_SUBFOLDERS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")


@BACKBONES.register("sdxl")
class SDXLBackbone(Backbone):
    """A diffusers Stable Diffusion XL folder (``StableDiffusionXLPipeline`` layout)."""

    family = "sdxl"
    reference = "sdxl"
    pipeline_family = "sdxl"

    def __init__(self, source: Path, tokenizers: tuple, text_encoders: tuple, vae, unet, scheduler_config: dict,
                 force_zeros_for_empty_prompt: bool = True):
        self.source = source
        self.tokenizer, self.tokenizer_2 = tokenizers
        self.text_encoder, self.text_encoder_2 = text_encoders
        self.vae, self.unet = vae, unet
        self.scheduler_config = scheduler_config
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.context_dim = unet.config.cross_attention_dim
        self.pooled_dim = self.text_encoder_2.config.projection_dim
        self.max_length = self.tokenizer.model_max_length
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.resolution = unet.config.sample_size * self.vae_scale_factor
        self.vae_scaling_factor = vae.config.scaling_factor
        for module in self.frozen_modules().values():
            module.requires_grad_(False)
            module.eval()

    @classmethod
    def load(cls, source: str | None, revision: str | None = None) -> "SDXLBackbone":
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        if source is None:
            raise ModelNotAvailableError("backbone.source is not set; set it to a diffusers SDXL folder or hub id")
        folder = resolve_model_source(source, "backbone", "backbone.source", revision)
        check_pipeline_folder(folder, _SUBFOLDERS)
        check_pipeline_class(folder, cls.pipeline_family)
        logger.info("loading %s backbone from %s", cls.family, folder)
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        return cls(
            folder,
            (CLIPTokenizer.from_pretrained(folder / "tokenizer"), CLIPTokenizer.from_pretrained(folder / "tokenizer_2")),
            (CLIPTextModel.from_pretrained(folder / "text_encoder"),
             CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2")),
            AutoencoderKL.from_pretrained(folder / "vae"),
            UNet2DConditionModel.from_pretrained(folder / "unet"),
            json.loads((folder / "scheduler" / "scheduler_config.json").read_text()),
            index.get("force_zeros_for_empty_prompt", True),
        )

    def encode_teacher(self, captions: list[str]) -> TextConditioning:
        sequences = []
        with torch.no_grad():
            for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
                ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                                truncation=True, return_tensors="pt").input_ids
                output = encoder(ids.to(encoder.device), output_hidden_states=True)
                # SDXL reads the penultimate layer of both encoders, before their final layer norm.
                sequences.append(output.hidden_states[-2])
        # The pooled embedding is the second encoder's projected end-of-text state.
        return TextConditioning(torch.cat(sequences, dim=-1), pooled=output.text_embeds)

    def time_ids(self, z_t: torch.Tensor) -> torch.Tensor:
        """Return the size conditions (B, 6) of uncropped images at the latents' size, as the pipeline makes them."""
        height, width = (side * self.vae_scale_factor for side in z_t.shape[-2:])
        ids = torch.tensor([height, width, 0, 0, height, width], dtype=z_t.dtype, device=z_t.device)
        return ids.expand(z_t.shape[0], -1)

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, conditioning: TextConditioning) -> torch.Tensor:
        if conditioning.pooled is None:
            raise IncompatibleModelsError("SDXL needs a pooled text embedding besides the sequence, and this "
                                          "conditioning has none; train the student with a pooled head")
        added = {"text_embeds": conditioning.pooled, "time_ids": self.time_ids(z_t).to(conditioning.pooled.dtype)}
        return self.unet(z_t, t, encoder_hidden_states=conditioning.sequence, added_cond_kwargs=added).sample

    def latent_encoder(self):
        return self.vae

    def denoiser(self):
        return self.unet

    def frozen_modules(self) -> dict:
        return {"text_encoder": self.text_encoder, "text_encoder_2": self.text_encoder_2, "vae": self.vae,
                "unet": self.unet}

    def teacher_unconditional(self, batch_size: int) -> TextConditioning:
        """Return zeros when the folder sets ``force_zeros_for_empty_prompt``, else the teacher's encoding of "".

        The stock pipeline uses zeros for an omitted negative prompt when the flag is set, as SDXL base was
        trained to expect.
        """
        if not self.force_zeros_for_empty_prompt:
            return super().teacher_unconditional(batch_size)
        width = self.text_encoder.config.hidden_size + self.text_encoder_2.config.hidden_size
        options = {"device": self.text_encoder.device, "dtype": self.text_encoder.dtype}
        return TextConditioning(torch.zeros(batch_size, self.max_length, width, **options),
                                pooled=torch.zeros(batch_size, self.pooled_dim, **options))

    def pipeline_inputs(self, positive: TextConditioning, negative: TextConditioning) -> dict:
        return {**super().pipeline_inputs(positive, negative),
                "pooled_prompt_embeds": positive.pooled, "negative_pooled_prompt_embeds": negative.pooled}

    def pipeline(self, scheduler_name: str):
        """Return a ``StableDiffusionXLPipeline`` on the frozen modules with the named sampler."""
        from diffusers import StableDiffusionXLPipeline

        from polyiap.backbones.samplers import make_sampler

        return StableDiffusionXLPipeline(
            vae=self.vae, text_encoder=self.text_encoder, text_encoder_2=self.text_encoder_2,
            tokenizer=self.tokenizer, tokenizer_2=self.tokenizer_2, unet=self.unet,
            scheduler=make_sampler(scheduler_name, self.scheduler_config),
            force_zeros_for_empty_prompt=self.force_zeros_for_empty_prompt, add_watermarker=False)
