"""PixArt-alpha and PixArt-Sigma: a T5 text encoder with its padding mask and a DiT with 28 cross-attention blocks.

The transformer maps the T5 states through ``caption_projection`` (4096 to 1152 wide) before every
block's cross-attention, and turns the 0/1 text mask into an additive bias there. `pivot_inputs`
applies the same two steps to the student's states, so the pivot processors see them as they see
the teacher's.
"""

import json
import logging
from pathlib import Path

import torch

from polyiap.backbones.base import Backbone, TextConditioning
from polyiap.backbones.detect import check_pipeline_class, pipeline_class
from polyiap.backbones.registry import BACKBONES
from polyiap.backbones.sd1 import check_pipeline_folder
from polyiap.errors import ModelNotAvailableError
from polyiap.hub import resolve_model_source

logger = logging.getLogger(__name__)

_SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
# Tokens per caption: the default `max_sequence_length` of each pipeline class (diffusers 0.42).
MAX_SEQUENCE_LENGTH = {"PixArtAlphaPipeline": 120, "PixArtSigmaPipeline": 300}
_MASKED_BIAS = -10000.0  # the bias PixArtTransformer2DModel gives masked text tokens


@BACKBONES.register("pixart")
class PixArtBackbone(Backbone):
    """A diffusers PixArt-alpha or PixArt-Sigma folder (``PixArtAlphaPipeline`` / ``PixArtSigmaPipeline`` layout)."""

    family = "pixart"
    reference = "pixart-alpha-512"
    pipeline_family = "pixart"
    uses_text_mask = True

    def __init__(self, source: Path, tokenizer, text_encoder, vae, transformer, scheduler_config: dict,
                 pipeline_class_name: str):
        self.source = source
        self.tokenizer, self.text_encoder, self.vae, self.transformer = tokenizer, text_encoder, vae, transformer
        self.scheduler_config = scheduler_config
        self.pipeline_class_name = pipeline_class_name
        self.context_dim = transformer.config.caption_channels
        self.max_length = MAX_SEQUENCE_LENGTH[pipeline_class_name]
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.resolution = transformer.config.sample_size * self.vae_scale_factor
        self.vae_scaling_factor = vae.config.scaling_factor
        for module in self.frozen_modules().values():
            module.requires_grad_(False)
            module.eval()

    @classmethod
    def load(cls, source: str | None, revision: str | None = None) -> "PixArtBackbone":
        from diffusers import AutoencoderKL, PixArtTransformer2DModel
        from transformers import AutoTokenizer, T5EncoderModel

        if source is None:
            raise ModelNotAvailableError("backbone.source is not set; set it to a diffusers PixArt folder or hub id")
        folder = resolve_model_source(source, "backbone", "backbone.source", revision)
        check_pipeline_folder(folder, _SUBFOLDERS)
        check_pipeline_class(folder, cls.pipeline_family)
        logger.info("loading %s backbone from %s", cls.family, folder)
        return cls(
            folder,
            AutoTokenizer.from_pretrained(folder / "tokenizer"),
            T5EncoderModel.from_pretrained(folder / "text_encoder"),
            AutoencoderKL.from_pretrained(folder / "vae"),
            PixArtTransformer2DModel.from_pretrained(folder / "transformer"),
            json.loads((folder / "scheduler" / "scheduler_config.json").read_text()),
            pipeline_class(folder),
        )

    def encode_teacher(self, captions: list[str]) -> TextConditioning:
        # The pipelines' text preprocessing without `clean_caption`: lower case, stripped.
        prompts = [caption.lower().strip() for caption in captions]
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                                add_special_tokens=True, return_tensors="pt")
        device = self.text_encoder.device
        mask = tokens.attention_mask.to(device)
        with torch.no_grad():
            states = self.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
        return TextConditioning(states, mask=mask)

    def pivot_inputs(self, conditioning: TextConditioning) -> tuple[torch.Tensor, torch.Tensor | None]:
        states = self.transformer.caption_projection(conditioning.sequence)  # (B, L, inner_dim)
        mask = conditioning.mask
        if mask is not None:
            mask = ((1 - mask.to(states.dtype)) * _MASKED_BIAS).unsqueeze(1)  # (B, 1, L)
        return states, mask

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, conditioning: TextConditioning) -> torch.Tensor:
        added = {"resolution": None, "aspect_ratio": None}
        if self.transformer.use_additional_conditions:
            height, width = (side * self.vae_scale_factor for side in z_t.shape[-2:])
            batch = z_t.shape[0]
            added = {"resolution": torch.tensor([[height, width]], dtype=z_t.dtype, device=z_t.device).repeat(batch, 1),
                     "aspect_ratio": torch.full((batch, 1), height / width, dtype=z_t.dtype, device=z_t.device)}
        output = self.transformer(z_t, encoder_hidden_states=conditioning.sequence,
                                  encoder_attention_mask=conditioning.mask, timestep=t, added_cond_kwargs=added).sample
        if output.shape[1] == 2 * z_t.shape[1]:
            output = output.chunk(2, dim=1)[0]  # the learned variance half is not a noise prediction
        return output

    def latent_encoder(self):
        return self.vae

    def denoiser(self):
        return self.transformer

    def frozen_modules(self) -> dict:
        return {"text_encoder": self.text_encoder, "vae": self.vae, "transformer": self.transformer}

    def pipeline_inputs(self, positive: TextConditioning, negative: TextConditioning) -> dict:
        # The PixArt pipelines default negative_prompt to "" and reject it beside negative_prompt_embeds.
        return {**super().pipeline_inputs(positive, negative), "negative_prompt": None,
                "prompt_attention_mask": positive.mask, "negative_prompt_attention_mask": negative.mask}

    def pipeline_options(self) -> dict:
        # Training encodes English captions lower-cased, without cleaning, padded to max_length tokens.
        # Resolution binning is off because it raises for sample sizes other than 32, 64 and 128 latents,
        # and it leaves a square image of the model's own size unchanged anyway.
        return {"clean_caption": False, "max_sequence_length": self.max_length, "use_resolution_binning": False}

    def pipeline(self, scheduler_name: str):
        """Return the folder's PixArt pipeline class on the frozen modules with the named sampler."""
        import diffusers

        from polyiap.backbones.samplers import make_sampler

        return getattr(diffusers, self.pipeline_class_name)(
            tokenizer=self.tokenizer, text_encoder=self.text_encoder, vae=self.vae, transformer=self.transformer,
            scheduler=make_sampler(scheduler_name, self.scheduler_config))
