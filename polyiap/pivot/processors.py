"""Cross-attention processors that compute the pivot comparison inside one frozen denoiser pass.

Each processor computes its layer's attention exactly as diffusers' SDPA processor does (so the
denoiser's output is unchanged), and, when the shared `PivotContext` contains student states, also
attends from the same queries, detached, to the student's keys and values:

    Q = W_Q phi(z_t)                        (shared, no gradient)
    A(c) = softmax(Q (W_K c)^T / sqrt(d)) (W_V c)
    loss_i = mean((A(teacher) - A(student))^2)

Student states reach the processors through the context object rather than a keyword argument,
because ``Attention.forward`` drops keyword arguments a processor does not declare and would pass
them to self-attention layers as well.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PivotContext:
    """State shared by the pivot processors of one denoiser during one forward pass.

    Args:
        compare: ``pre_out`` compares attention outputs before ``to_out`` (the IAP objective);
            ``post_out`` compares them after the output projection.
        student_states: (B, L_student, context_dim) student embeddings, or None to run plain attention.
        student_mask: (B, L_student) mask for families whose cross-attention reads one; None for SD.
        grad: whether the student branch records gradients.
        layer_losses: per-layer MSE values appended during the pass, in execution order.
    """

    compare: str = "pre_out"
    student_states: torch.Tensor | None = None
    student_mask: torch.Tensor | None = None
    grad: bool = True
    layer_losses: list[torch.Tensor] = field(default_factory=list)

    def begin(self, student_states: torch.Tensor | None, student_mask: torch.Tensor | None = None,
              grad: bool = True) -> None:
        self.student_states, self.student_mask, self.grad = student_states, student_mask, grad
        self.layer_losses = []

    def end(self) -> torch.Tensor:
        """Return the sum of the layer losses and clear the student states."""
        if not self.layer_losses:
            raise RuntimeError("no cross-attention layer recorded a pivot loss; are the processors installed?")
        total = torch.stack(self.layer_losses).sum()
        self.student_states, self.student_mask, self.layer_losses = None, None, []
        return total


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, inner = x.shape
    return x.view(batch, length, heads, inner // heads).transpose(1, 2)  # (B, heads, L, head_dim)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)  # (B, L, inner)


def _attention_mask(attn: nn.Module, mask: torch.Tensor | None, key_length: int, batch: int):
    if mask is None:
        return None
    mask = attn.prepare_attention_mask(mask, key_length, batch)
    return mask.view(batch, attn.heads, -1, mask.shape[-1])


def attend(attn: nn.Module, query: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Return the attention output before ``to_out`` for split-head ``query`` and a text ``context``."""
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    key = _split_heads(attn.to_k(context), attn.heads)
    value = _split_heads(attn.to_v(context), attn.heads)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    mask = _attention_mask(attn, mask, context.shape[1], context.shape[0])
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
    return _merge_heads(out).to(query.dtype)  # (B, N, inner)


class PivotAttnProcessor:
    """An SDPA attention processor that also records the pivot loss of its layer (see module docstring)."""

    def __init__(self, context: PivotContext, layer_name: str):
        self.context = context
        self.layer_name = layer_name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = _split_heads(attn.to_q(hidden_states), attn.heads)  # (B, heads, N, head_dim)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        teacher_out = attend(attn, query, context, attention_mask)
        hidden_states = attn.to_out[0](teacher_out)

        if encoder_hidden_states is not None and self.context.student_states is not None:
            self._record_loss(attn, query, teacher_out, hidden_states)

        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _record_loss(self, attn, query, teacher_pre_out, teacher_post_out) -> None:
        ctx = self.context
        with torch.set_grad_enabled(ctx.grad):
            student_out = attend(attn, query.detach(), ctx.student_states, ctx.student_mask)
            target = teacher_pre_out
            if ctx.compare == "post_out":
                student_out, target = attn.to_out[0](student_out), teacher_post_out
            ctx.layer_losses.append(F.mse_loss(student_out.float(), target.detach().float()))


@contextmanager
def pivot_processors(layers: dict[str, nn.Module], context: PivotContext):
    """Install a `PivotAttnProcessor` on each cross-attention layer; restore the old processors on exit."""
    originals = {name: module.processor for name, module in layers.items()}
    try:
        for name, module in layers.items():
            module.set_processor(PivotAttnProcessor(context, name))
        yield context
    finally:
        for name, module in layers.items():
            module.set_processor(originals[name])
