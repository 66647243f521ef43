"""Training objectives: the IAP pivot loss and the plain denoising loss (the ablation baseline of Hu et al. 2023)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from polyiap.backbones.base import Backbone, TextConditioning
from polyiap.errors import IncompatibleModelsError
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
    """A training loss computed with a frozen backbone whose cross-attention layers hold pivot processors.

    Args:
        backbone: the frozen backbone.
        context: the context its pivot processors share.
        pooled_weight: weight of the pooled-embedding term, for backbones with a pooled embedding.
    """

    def __init__(self, backbone: Backbone, context: PivotContext, pooled_weight: float = 1.0):
        self.backbone = backbone
        self.context = context
        self.pooled_weight = pooled_weight

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        raise NotImplementedError


LOSSES: Registry[type[Objective]] = Registry("loss", base=Objective)


@LOSSES.register("pivot")
class PivotLoss(Objective):
    """Sum over cross-attention layers of the MSE between teacher and student attention outputs.

    With shared queries (the default) the denoiser runs once, conditioned on the teacher and without
    gradients. The processors add the student branch from the same detached queries, so gradients
    reach the student only through the frozen key and value projections. With ``two-pass`` queries
    see `two_pass_loss`. For backbones with a pooled text embedding, ``pooled_weight`` times the MSE
    between the student's and the teacher's pooled embeddings is added (see `pooled_loss`).
    """

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        if self.context.queries == "two-pass":
            loss = two_pass_loss(self.backbone, self.context, inputs, grad=True)
        else:
            loss = pivot_loss(self.backbone, self.context, inputs, grad=True)
        pooled = pooled_loss(inputs)
        if pooled is not None and self.pooled_weight:
            loss = loss + self.pooled_weight * pooled
        return loss


def pooled_loss(inputs: LossInputs) -> torch.Tensor | None:
    """Return the MSE between the student's and the teacher's pooled embeddings, or None without a teacher pooled one.

    The pivot loss cannot train a pooled embedding, because it enters the denoiser through the time
    embedding rather than through cross-attention.
    """
    if inputs.teacher.pooled is None:
        return None
    if inputs.student.pooled is None:
        raise IncompatibleModelsError("the backbone has a pooled text embedding but the student produces none; "
                                      "build the student with a pooled head (pooled_dim) for this backbone")
    return F.mse_loss(inputs.student.pooled.float(), inputs.teacher.pooled.detach().float())


def pivot_loss(backbone: Backbone, context: PivotContext, inputs: LossInputs, grad: bool) -> torch.Tensor:
    """Run the shared-query pass and return the summed per-layer pivot loss."""
    with torch.set_grad_enabled(grad):
        states, mask = backbone.pivot_inputs(inputs.student)
    context.begin(states, mask, grad=grad)
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
        prediction = self.backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.student)
        return F.mse_loss(prediction.float(), denoise_target(self.backbone, inputs).float())


def denoise_target(backbone: Backbone, inputs: LossInputs) -> torch.Tensor:
    """Return what the denoiser is trained to predict, by the scheduler's ``prediction_type``."""
    prediction_type = backbone.scheduler_config.get("prediction_type", "epsilon")
    if prediction_type == "epsilon":
        return inputs.noise
    if prediction_type == "v_prediction":
        return backbone.noise_scheduler().get_velocity(inputs.latents, inputs.noise, inputs.timesteps)
    if prediction_type == "sample":
        return inputs.latents
    raise IncompatibleModelsError(f"the backbone's scheduler has prediction_type {prediction_type!r}, which the plain "
                                  "denoising loss does not support; use epsilon, v_prediction or sample")
