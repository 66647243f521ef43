"""The interface every backbone adapter provides."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass
class TextConditioning:
    """Text conditioning for the denoiser.

    Args:
        sequence: token states, shape (B, L, context_dim).
        pooled: pooled text embedding (B, pooled_dim) for families that use one.
        mask: (B, L) attention mask for families whose cross-attention reads one.
    """

    sequence: torch.Tensor
    pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TextConditioning":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return TextConditioning(move(self.sequence), move(self.pooled), move(self.mask))


class Backbone(ABC):
    """A frozen English text-to-image model that the student is transferred into."""

    family: str = ""
    reference: str | None = None  # stem of the real configuration in configs/*.json
    source: Path
    context_dim: int
    pooled_dim: int | None = None
    uses_text_mask: bool = False  # whether cross-attention reads a text attention mask
    max_length: int
    resolution: int
    vae_scale_factor: int  # image pixels per latent pixel along each side
    vae_scaling_factor: float
    scheduler_config: dict

    @classmethod
    @abstractmethod
    def load(cls, source: str | None, revision: str | None = None) -> "Backbone":
        """Load the model from a local folder or hub id, frozen and in eval mode."""

    @abstractmethod
    def encode_teacher(self, captions: list[str]) -> TextConditioning:
        """Encode English captions with the backbone's own text encoder."""

    def cross_attention_layers(self) -> dict[str, nn.Module]:
        """Return the attention modules whose keys and values come from text, by module name."""
        return cross_attention_modules(self.denoiser())

    def teacher_unconditional(self, batch_size: int) -> TextConditioning:
        """Return the teacher's unconditional conditioning (its encoding of the empty prompt) for ``batch_size`` rows."""
        return self.encode_teacher([""] * batch_size)

    def pivot_inputs(self, conditioning: TextConditioning) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return text states and mask as the cross-attention layers receive them during `denoise`.

        The pivot processors attend to the student's states from the teacher pass's queries, so the
        states must first go through whatever the denoiser applies before its cross-attention layers.
        """
        return conditioning.sequence, conditioning.mask

    def pipeline_inputs(self, positive: TextConditioning, negative: TextConditioning) -> dict:
        """Return the keyword arguments that hand precomputed text conditioning to the family's pipeline."""
        return {"prompt_embeds": positive.sequence, "negative_prompt_embeds": negative.sequence}

    def pipeline_options(self) -> dict:
        """Return extra keyword arguments for every call of the family's pipeline."""
        return {}

    @abstractmethod
    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, conditioning: TextConditioning) -> torch.Tensor:
        """Run one denoiser forward pass and return its prediction."""

    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the mean and standard deviation of the VAE posterior for images in [-1, 1], (B, 3, H, W).

        Both are unscaled latents; `latents_from_posterior` turns them into the denoiser's input.
        """
        vae = self.latent_encoder()
        with torch.no_grad():
            posterior = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        return posterior.mean, posterior.std

    def latents_from_posterior(self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None,
                               sample: bool = True) -> torch.Tensor:
        """Return scaled latents: a posterior sample drawn with ``generator``, or the mean when ``sample`` is False."""
        if sample:
            from diffusers.utils.torch_utils import randn_tensor

            noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + std * noise
        return mean * self.vae_scaling_factor

    def encode_images(self, pixels: torch.Tensor, generator: torch.Generator | None = None,
                      sample: bool = True) -> torch.Tensor:
        """Return scaled VAE latents of images in [-1, 1], shape (B, 3, H, W).

        With ``sample=False`` the latents are the mean of the VAE's posterior, so they need no randomness.
        """
        mean, std = self.encode_posterior(pixels)
        return self.latents_from_posterior(mean, std, generator, sample)

    @abstractmethod
    def latent_encoder(self) -> nn.Module:
        """Return the image encoder whose posterior `encode_posterior` reads (its weights key latent caches)."""

    @abstractmethod
    def denoiser(self) -> nn.Module:
        """Return the denoising network (the module the pivot processors are installed in)."""

    @abstractmethod
    def frozen_modules(self) -> dict[str, nn.Module]:
        """Return every frozen module by name (used to check that training leaves them unchanged)."""

    def noise_scheduler(self):
        """Return the training noise scheduler (DDPM with the folder's schedule and prediction type)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler_config)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Backbone":
        for module in self.frozen_modules().values():
            module.to(device=device, dtype=dtype)
        return self


def cross_attention_modules(denoiser: nn.Module) -> dict[str, nn.Module]:
    """Return the attention modules of ``denoiser`` whose keys and values come from text, by module name."""
    return {name: module for name, module in denoiser.named_modules()
            if getattr(module, "is_cross_attention", False)}
