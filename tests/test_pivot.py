"""The pivot math on the tiny SD 1.x backbone: hand computation, unchanged output, gradient flow."""

import math

import pytest
import torch

from polyiap.backbones import TextConditioning
from polyiap.pivot import DenoiseLoss, LossInputs, PivotContext, PivotLoss, pivot_loss, pivot_processors


def random_inputs(backbone, batch=2, student_length=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = backbone.unet.config.sample_size
    latents = torch.randn(batch, 4, size, size, generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (batch,), generator=generator)
    noisy = backbone.noise_scheduler().add_noise(latents, noise, timesteps)
    teacher = backbone.encode_teacher(["a brown bear on the grass", "two dogs play in the snow"][:batch])
    length = student_length or teacher.sequence.shape[1]
    student = torch.randn(batch, length, backbone.context_dim, generator=generator, requires_grad=True)
    return LossInputs(latents, noise, timesteps, noisy, teacher, TextConditioning(student))


def capture_queries(backbone, inputs):
    """Record the hidden states entering each cross-attention layer during a plain forward pass."""
    captured, handles = {}, []
    for name, module in backbone.cross_attention_layers().items():
        def hook(module, args, kwargs, name=name):
            captured[name] = args[0] if args else kwargs["hidden_states"]
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    with torch.no_grad():
        backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.teacher)
    for handle in handles:
        handle.remove()
    return captured


def hand_attention(attn, hidden, context):
    """softmax(Q K^T / sqrt(d)) V per head, concatenated, before to_out, written out by hand."""
    heads = attn.heads
    query, key, value = attn.to_q(hidden), attn.to_k(context), attn.to_v(context)
    head_dim = query.shape[-1] // heads
    outputs = []
    for h in range(heads):
        part = slice(h * head_dim, (h + 1) * head_dim)
        scores = query[..., part] @ key[..., part].transpose(1, 2) / math.sqrt(head_dim)
        outputs.append(scores.softmax(-1) @ value[..., part])
    return torch.cat(outputs, dim=-1)


def test_cross_attention_layers_found(tiny_backbone):
    layers = tiny_backbone.cross_attention_layers()
    assert len(layers) == 7
    assert all(name.endswith("attn2") for name in layers)


@pytest.mark.parametrize("compare", ["pre_out", "post_out"])
def test_pivot_loss_matches_hand_computation(tiny_backbone, compare):
    inputs = random_inputs(tiny_backbone)
    queries = capture_queries(tiny_backbone, inputs)
    expected = torch.zeros(())
    with torch.no_grad():
        for name, attn in tiny_backbone.cross_attention_layers().items():
            teacher = hand_attention(attn, queries[name], inputs.teacher.sequence)
            student = hand_attention(attn, queries[name], inputs.student.sequence)
            if compare == "post_out":
                teacher, student = attn.to_out[0](teacher), attn.to_out[0](student)
            expected += ((teacher - student) ** 2).mean()

    context = PivotContext(compare=compare)
    with pivot_processors(tiny_backbone.cross_attention_layers(), context):
        loss = pivot_loss(tiny_backbone, context, inputs, grad=True)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_processors_leave_output_unchanged(tiny_backbone):
    inputs = random_inputs(tiny_backbone)
    with torch.no_grad():
        before = tiny_backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.teacher)
        context = PivotContext()
        with pivot_processors(tiny_backbone.cross_attention_layers(), context):
            context.begin(inputs.student.sequence.detach(), grad=False)
            during = tiny_backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.teacher)
            context.end()
        after = tiny_backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.teacher)
    torch.testing.assert_close(during, before, atol=1e-5, rtol=0)
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_processors_restored_on_exit(tiny_backbone):
    layers = tiny_backbone.cross_attention_layers()
    originals = {name: type(m.processor) for name, m in layers.items()}
    with pivot_processors(layers, PivotContext()):
        assert all(type(m.processor).__name__ == "PivotAttnProcessor" for m in layers.values())
    assert {name: type(m.processor) for name, m in layers.items()} == originals


@pytest.mark.parametrize("student_length", [5, 32, 100])
def test_student_length_may_differ(tiny_backbone, student_length):
    inputs = random_inputs(tiny_backbone, student_length=student_length)
    context = PivotContext()
    with pivot_processors(tiny_backbone.cross_attention_layers(), context):
        loss = PivotLoss(tiny_backbone, context)(inputs)
    loss.backward()
    assert inputs.student.sequence.grad is not None
    assert inputs.student.sequence.grad.abs().sum() > 0


def test_pivot_gradient_skips_frozen_modules(tiny_backbone):
    inputs = random_inputs(tiny_backbone)
    context = PivotContext()
    with pivot_processors(tiny_backbone.cross_attention_layers(), context):
        loss = PivotLoss(tiny_backbone, context)(inputs)
    assert loss.requires_grad
    loss.backward()
    for module in tiny_backbone.frozen_modules().values():
        assert all(p.grad is None for p in module.parameters())


def test_identical_embeddings_give_zero_loss(tiny_backbone):
    inputs = random_inputs(tiny_backbone)
    inputs.student = TextConditioning(inputs.teacher.sequence.clone())
    context = PivotContext()
    with pivot_processors(tiny_backbone.cross_attention_layers(), context):
        loss = pivot_loss(tiny_backbone, context, inputs, grad=False)
    assert loss.item() < 1e-10


def test_denoise_loss_reaches_student(tiny_backbone):
    inputs = random_inputs(tiny_backbone)
    context = PivotContext()
    with pivot_processors(tiny_backbone.cross_attention_layers(), context):
        loss = DenoiseLoss(tiny_backbone, context)(inputs)
    loss.backward()
    assert inputs.student.sequence.grad.abs().sum() > 0
    assert context.layer_losses == []


def test_fused_projection_matches_per_layer(tiny_backbone):
    from polyiap.pivot import FusedKV

    layers = tiny_backbone.cross_attention_layers()
    assert FusedKV.supports(layers)
    states = torch.randn(2, 9, tiny_backbone.context_dim)
    fused = FusedKV(layers)(states)
    assert list(fused) == list(layers)
    for name, attn in layers.items():
        key, value = fused[name]
        assert torch.allclose(key, attn.to_k(states), atol=1e-6)
        assert torch.allclose(value, attn.to_v(states), atol=1e-6)


def test_fused_and_per_layer_losses_agree(tiny_backbone):
    inputs = random_inputs(tiny_backbone)
    losses, grads = {}, {}
    for fused in (True, False):
        context = PivotContext(fused_kv=fused)
        with pivot_processors(tiny_backbone.cross_attention_layers(), context):
            loss = pivot_loss(tiny_backbone, context, inputs, grad=True)
        (grads[fused],) = torch.autograd.grad(loss, inputs.student.sequence)
        losses[fused] = loss.detach()
    assert torch.allclose(losses[True], losses[False], rtol=1e-5)
    assert torch.allclose(grads[True], grads[False], rtol=1e-4, atol=1e-7)


def layer_losses(backbone, inputs, queries: str) -> list[torch.Tensor]:
    """Return the per-layer losses, in execution order, of one shared-query or two-pass computation."""
    context = PivotContext(queries=queries)
    with pivot_processors(backbone.cross_attention_layers(), context):
        if queries == "shared":
            context.begin(inputs.student.sequence)
            with torch.no_grad():
                backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.teacher)
        else:
            context.begin_record()
            with torch.no_grad():
                backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.teacher)
            context.begin_match()
            backbone.denoise(inputs.noisy_latents, inputs.timesteps, inputs.student)
        losses = list(context.layer_losses)
        context.end()
    return losses


def test_two_pass_agrees_at_first_layer(tiny_backbone):
    inputs = random_inputs(tiny_backbone)
    shared = layer_losses(tiny_backbone, inputs, "shared")
    two_pass = layer_losses(tiny_backbone, inputs, "two-pass")
    assert len(shared) == len(two_pass) == 7
    # Before the first cross-attention layer the trunk has not read any text, so the queries match.
    assert torch.allclose(shared[0], two_pass[0], rtol=1e-5)
    # Later layers see queries shaped by the student's states in the two-pass mode.
    assert any(not torch.allclose(a, b, rtol=1e-3) for a, b in zip(shared[1:], two_pass[1:]))


def test_two_pass_gradients_reach_only_the_student(tiny_backbone):
    inputs = random_inputs(tiny_backbone)
    context = PivotContext(queries="two-pass")
    with pivot_processors(tiny_backbone.cross_attention_layers(), context):
        loss = PivotLoss(tiny_backbone, context)(inputs)
    loss.backward()
    assert inputs.student.sequence.grad is not None and inputs.student.sequence.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_backbone.unet.parameters())
    assert context.mode is None
    assert context.targets == []
