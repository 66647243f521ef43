"""Training objectives: the IAP pivot loss and the plain denoising loss (the ablation baseline of Hu et al. 2023)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from polyiap.backbones.base import Backbone, TextConditioning
from polyiap.pivot.processors import PivotContext
from polyiap.registry import Registry


@dataclass
class LossInputs:
    """One batch of objective inputs.

    Args:
        latents: clean VAE latents z_0, (B, C, h, w).
        noise: the noise added to them, same shape.
        timesteps: (B,) integer timesteps.
        noisy_latents: z_t.
        teacher: the backbone's own encoding of the English captions.
        student: the student's encoding of the target-language captions.
    """

    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    noisy_latents: torch.Tensor
    teacher: TextConditioning
    student: TextConditioning


class Objective:
    """A training loss computed with a frozen backbone whose cross-attention layers hold pivot processors."""

    def __init__(self, backbone: Backbone, context: PivotContext):
        self.backbone = backbone
        self.context = context

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        raise NotImplementedError


LOSSES: Registry[type[Objective]] = Registry("loss", base=Objective)


@LOSSES.register("pivot")
class PivotLoss(Objective):
    """Sum over cross-attention layers of the MSE between teacher and student attention outputs.

    With shared queries (the default) the denoiser runs once, conditioned on the teacher and without
    gradients. The processors add the student branch from the same detached queries, so gradients
    reach the student only through the frozen key and value projections. With ``two-pass`` queries
    see `two_pass_loss`.
    """

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        if self.context.queries == "two-pass":
            return two_pass_loss(self.backbone, self.context, inputs, grad=True)
        return pivot_loss(self.backbone, self.context, inputs, grad=True)


def pivot_loss(backbone: Backbone, context: PivotContext, inputs: LossInputs, grad: bool) -> torch.Tensor:
    """Run the shared-query pass and return the summed per-layer pivot loss."""
    context.begin(inputs.student.sequence, inputs.student.mask, grad=grad)
    try:
        with torch.no_grad():
            backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.teacher)
        return context.end()
    finally:
        context.begin(None)


def two_pass_loss(backbone: Backbone, context: PivotContext, inputs: LossInputs, grad: bool) -> torch.Tensor:
    """Run a teacher pass, then a student-conditioned pass, and return the summed per-layer loss.

    The student pass keeps the autograd graph of the whole frozen denoiser, because each layer's
    queries depend on the student's states through the earlier layers. That costs about three
    denoiser forwards per step (teacher pass, student pass, and its backward) and the activation
    memory of a full forward.
    """
    try:
        context.begin_record()
        with torch.no_grad():
            backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.teacher)
        context.begin_match()
        with torch.set_grad_enabled(grad):
            backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.student)
        return context.end()
    finally:
        context.begin(None)
        context.targets = []


@LOSSES.register("denoise")
class DenoiseLoss(Objective):
    """The ordinary diffusion loss with the student's embeddings, gradients through the frozen denoiser."""

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        scheduler_config = self.backbone.scheduler_config
        prediction = self.backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.student)
        if scheduler_config.get("prediction_type", "epsilon") == "v_prediction":
            scheduler = self.backbone.noise_scheduler()
            target = scheduler.get_velocity(inputs.latents, inputs.noise, inputs.timesteps)
        else:
            target = inputs.noise
        return F.mse_loss(prediction.float(), target.float())
