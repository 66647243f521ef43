"""Cross-attention processors that compute the pivot comparison inside one frozen denoiser pass.

Each processor computes its layer's attention exactly as diffusers' SDPA processor does (so the
denoiser's output is unchanged), and, when the shared `PivotContext` contains student states, also
attends from the same queries, detached, to the student's keys and values:

    Q = W_Q phi(z_t)                        (shared, no gradient)
    A(c) = softmax(Q (W_K c)^T / sqrt(d)) (W_V c)
    loss_i = mean((A(teacher) - A(student))^2)

In the two-pass mode (``loss.queries: two-pass``) the denoiser runs twice instead: a teacher pass
records each layer's output, and a student-conditioned pass with gradients through the trunk compares
its own outputs (from its own queries) with them. It is the reference the shared-query pass is
measured against.

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
        queries: ``shared`` (one denoiser pass, the student attends from the teacher pass's queries)
            or ``two-pass`` (a teacher pass, then a student pass with its own queries).
        fused_kv: compute the student's keys and values of all layers with one matrix product.
        mode: what the processors do besides plain attention: ``shared`` adds the student branch from
            the same queries, ``record`` stores each layer's output in ``targets``, ``match`` compares
            each layer's output with ``targets``; None runs plain attention.
        student_states: (B, L_student, context_dim) student embeddings of the shared mode.
        student_mask: (B, L_student) mask for families whose cross-attention reads one; None for SD.
        grad: whether the student branch records gradients.
        layer_losses: per-layer MSE values appended during the pass, in execution order.
        targets: per-layer outputs of the recording pass, in execution order.
    """

    compare: str = "pre_out"
    queries: str = "shared"
    fused_kv: bool = True
    mode: str | None = None
    student_states: torch.Tensor | None = None
    student_mask: torch.Tensor | None = None
    grad: bool = True
    layer_losses: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)
    student_kv: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    projection: "FusedKV | None" = None

    def begin(self, student_states: torch.Tensor | None, student_mask: torch.Tensor | None = None,
              grad: bool = True) -> None:
        """Start a shared-query pass with ``student_states`` (None ends any pass)."""
        self.student_states, self.student_mask, self.grad = student_states, student_mask, grad
        self.mode = "shared" if student_states is not None else None
        self.layer_losses, self.student_kv = [], None
        if student_states is not None and self.fused_kv and self.projection is not None:
            with torch.set_grad_enabled(grad):
                self.student_kv = self.projection(student_states)

    def begin_record(self) -> None:
        """Start the teacher pass of the two-pass mode: each cross-attention layer stores its output."""
        self.begin(None)
        self.mode, self.targets = "record", []

    def begin_match(self) -> None:
        """Start the student pass of the two-pass mode: each layer compares its output with the record."""
        if not self.targets:
            raise RuntimeError("begin_match needs a recording pass first (begin_record, then a denoiser pass)")
        self.mode, self.layer_losses = "match", []

    def end(self) -> torch.Tensor:
        """Return the sum of the layer losses and clear the pass state."""
        if not self.layer_losses:
            raise RuntimeError("no cross-attention layer recorded a pivot loss; are the processors installed?")
        total = torch.stack(self.layer_losses).sum()
        self.begin(None)
        self.targets = []
        return total


class FusedKV:
    """The key and value projections of all cross-attention layers as one linear map.

    The layers' ``to_k`` and ``to_v`` weights are concatenated once (they are frozen), so the student's
    keys and values for every layer come from a single matrix product instead of two per layer.
    """

    def __init__(self, layers: dict[str, nn.Module]):
        self.layers = layers
        self.names = list(layers)
        self.sizes = [size for m in layers.values() for size in (m.to_k.out_features, m.to_v.out_features)]
        self._cache: tuple[torch.device, torch.dtype, torch.Tensor, torch.Tensor | None] | None = None

    @staticmethod
    def supports(layers: dict[str, nn.Module]) -> bool:
        """Return True when every layer projects the raw text states (no cross-norm) of one width."""
        widths = {m.to_k.in_features for m in layers.values()}
        return bool(layers) and len(widths) == 1 and all(m.norm_cross is None for m in layers.values())

    def _weights(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._cache is None or self._cache[:2] != (device, dtype):
            projections = [p for m in self.layers.values() for p in (m.to_k, m.to_v)]
            weight = torch.cat([p.weight.detach() for p in projections]).to(device, dtype)
            bias = None
            if any(p.bias is not None for p in projections):
                bias = torch.cat([p.bias.detach() if p.bias is not None else p.weight.new_zeros(p.out_features)
                                  for p in projections]).to(device, dtype)
            self._cache = (device, dtype, weight, bias)
        return self._cache[2], self._cache[3]

    def __call__(self, states: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Return {layer name: (keys, values)} for ``states`` (B, L, context_dim), before the head split."""
        weight, bias = self._weights(states.device, states.dtype)
        parts = F.linear(states, weight, bias).split(self.sizes, dim=-1)
        return {name: (parts[2 * i], parts[2 * i + 1]) for i, name in enumerate(self.names)}


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


def attend(attn: nn.Module, query: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None,
           key_value: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Return the attention output before ``to_out`` for split-head ``query`` and a text ``context``.

    ``key_value`` gives the projections ``(to_k(context), to_v(context))`` when they are already computed.
    """
    if key_value is None:
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key_value = attn.to_k(context), attn.to_v(context)
    key, value = (_split_heads(x, attn.heads) for x in key_value)
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
        pre_out = attend(attn, query, context, attention_mask)
        hidden_states = attn.to_out[0](pre_out)
        if encoder_hidden_states is not None and self.context.mode is not None:
            self._pivot(attn, query, pre_out, hidden_states)

        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _pivot(self, attn, query, pre_out, post_out) -> None:
        ctx = self.context
        output = pre_out if ctx.compare == "pre_out" else post_out
        if ctx.mode == "shared":
            self._shared_query_loss(attn, query, pre_out, post_out)
        elif ctx.mode == "record":
            ctx.targets.append(output.detach())
        elif ctx.mode == "match":
            target = ctx.targets[len(ctx.layer_losses)]
            ctx.layer_losses.append(F.mse_loss(output.float(), target.float()))

    def _shared_query_loss(self, attn, query, teacher_pre_out, teacher_post_out) -> None:
        ctx = self.context
        key_value = ctx.student_kv[self.layer_name] if ctx.student_kv is not None else None
        with torch.set_grad_enabled(ctx.grad):
            student_out = attend(attn, query.detach(), ctx.student_states, ctx.student_mask, key_value)
            target = teacher_pre_out
            if ctx.compare == "post_out":
                student_out, target = attn.to_out[0](student_out), teacher_post_out
            ctx.layer_losses.append(F.mse_loss(student_out.float(), target.detach().float()))


@contextmanager
def pivot_processors(layers: dict[str, nn.Module], context: PivotContext):
    """Install a `PivotAttnProcessor` on each cross-attention layer; restore the old processors on exit."""
    originals = {name: module.processor for name, module in layers.items()}
    context.projection = FusedKV(layers) if FusedKV.supports(layers) else None
    try:
        for name, module in layers.items():
            module.set_processor(PivotAttnProcessor(context, name))
        yield context
    finally:
        for name, module in layers.items():
            module.set_processor(originals[name])
        context.projection = None
