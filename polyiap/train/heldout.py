"""Held-out pivot loss with a fixed timestep and noise per sample, comparable across steps."""

from dataclasses import dataclass

import torch

from polyiap.backbones.base import Backbone, TextConditioning
from polyiap.data import Triplet, load_image
from polyiap.encoders import StudentEncoder
from polyiap.pivot import LossInputs, PivotContext, pivot_loss


@dataclass
class HeldOutBatch:
    noisy_latents: torch.Tensor
    timesteps: torch.Tensor
    teacher: TextConditioning
    targets: list[str]


class HeldOutSet:
    """Held-out triplets prepared once: VAE latents, noise, timesteps and teacher embeddings are fixed.

    Args:
        triplets: held-out triplets (their images never appear in training).
        backbone: the frozen backbone.
        resolution: image side in pixels.
        seed: seed of the fixed noise and timesteps.
        batch_size: samples per evaluation forward pass.
    """

    def __init__(self, triplets: list[Triplet], backbone: Backbone, resolution: int, seed: int, batch_size: int):
        self.backbone = backbone
        self.batches: list[HeldOutBatch] = []
        generator = torch.Generator().manual_seed(seed)
        scheduler = backbone.noise_scheduler()
        device = backbone.denoiser().device
        for start in range(0, len(triplets), batch_size):
            chunk = triplets[start:start + batch_size]
            pixels = torch.stack([load_image(t.image, resolution) for t in chunk])
            latents = backbone.encode_images(pixels.to(device), sample=False)
            noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(chunk),), generator=generator)
            noisy = scheduler.add_noise(latents, noise, timesteps.to(device))
            teacher = backbone.encode_teacher([t.english for t in chunk])
            self.batches.append(HeldOutBatch(noisy, timesteps.to(device), teacher, [t.target for t in chunk]))

    def __len__(self) -> int:
        return sum(len(b.targets) for b in self.batches)

    @torch.no_grad()
    def loss(self, context: PivotContext, student: StudentEncoder) -> float:
        """Mean pivot loss of ``student`` over the held-out samples."""
        was_training = student.training
        student.eval()
        try:
            return self._mean(context, lambda batch: student.encode(batch.targets))
        finally:
            student.train(was_training)

    @torch.no_grad()
    def constant_embedding_loss(self, context: PivotContext, sequence: torch.Tensor) -> float:
        """Mean pivot loss when every caption maps to the same (L, D) ``sequence``, such as the mean teacher embedding."""
        return self._mean(context, lambda batch: TextConditioning(
            sequence.unsqueeze(0).expand(len(batch.targets), -1, -1)))

    def _mean(self, context: PivotContext, encode) -> float:
        total, count = 0.0, 0
        for batch in self.batches:
            inputs = LossInputs(None, None, batch.timesteps, batch.noisy_latents, batch.teacher, encode(batch))
            total += pivot_loss(self.backbone, context, inputs, grad=False).item() * len(batch.targets)
            count += len(batch.targets)
        return total / count


@torch.no_grad()
def mean_teacher_embedding(backbone: Backbone, captions: list[str], batch_size: int = 64) -> torch.Tensor:
    """Return the average teacher sequence (L, D) over ``captions``."""
    total, count = None, 0
    for start in range(0, len(captions), batch_size):
        sequence = backbone.encode_teacher(captions[start:start + batch_size]).sequence.float()
        total = sequence.sum(0) if total is None else total + sequence.sum(0)
        count += sequence.shape[0]
    return total / count
