"""The IAP core: cross-attention capture processors and the training objectives."""

from polyiap.pivot.losses import LOSSES, DenoiseLoss, LossInputs, Objective, PivotLoss, pivot_loss, two_pass_loss
from polyiap.pivot.processors import FusedKV, PivotAttnProcessor, PivotContext, attend, pivot_processors

__all__ = ["LOSSES", "DenoiseLoss", "FusedKV", "LossInputs", "Objective", "PivotAttnProcessor", "PivotContext", "PivotLoss",
           "attend", "pivot_loss", "pivot_processors", "two_pass_loss"]
