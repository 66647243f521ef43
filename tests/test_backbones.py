"""Backbone families: real configurations on the meta device, tiny builds of SD 2.x, SDXL and PixArt end to end."""

import hashlib
import json

import pytest
import torch
from typer.testing import CliRunner

from polyiap.backbones import BACKBONES, TextConditioning, load_backbone
from polyiap.backbones.base import cross_attention_modules
from polyiap.backbones.detect import detect_family
from polyiap.backbones.reference import load_reference
from polyiap.cli.app import app
from polyiap.errors import UnsupportedModelError
from polyiap.pivot import LossInputs, PivotAttnProcessor, PivotContext, PivotLoss, pivot_loss, pivot_processors
from polyiap.pivot.losses import denoise_target

runner = CliRunner()
TINY_FAMILIES = ["tiny-sd2", "tiny-sdxl", "tiny-pixart"]

# (configuration, cross-attention layers, key/value input width, text width, pooled width)
REAL = [("sd15", 16, 768, 768, None), ("sd21", 16, 1024, 1024, None), ("sdxl", 70, 2048, 2048, 1280),
        ("pixart-alpha-512", 28, 1152, 4096, None)]


@pytest.fixture(scope="module")
def tiny(polyiap_cache):
    """Each tiny family, built once and loaded through its adapter."""
    return {family: load_backbone(family, None) for family in TINY_FAMILIES}


def noisy_inputs(backbone, teacher: TextConditioning, student: TextConditioning, seed: int = 0) -> LossInputs:
    generator = torch.Generator().manual_seed(seed)
    side = backbone.resolution // backbone.vae_scale_factor
    latents = torch.randn(teacher.sequence.shape[0], 4, side, side, generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.tensor([10, 900][:latents.shape[0]])
    noisy = backbone.noise_scheduler().add_noise(latents, noise, timesteps)
    return LossInputs(latents, noise, timesteps, noisy, teacher, student)


@pytest.mark.parametrize("name,layers,kv_width,text_width,pooled", REAL)
def test_real_config_layers(name, layers, kv_width, text_width, pooled):
    config = load_reference(name)
    denoiser = config.build_denoiser()
    found = cross_attention_modules(denoiser)
    assert next(denoiser.parameters()).device.type == "meta"
    assert len(found) == layers
    assert {m.to_k.in_features for m in found.values()} == {kv_width}
    assert config.context_dim == text_width
    assert config.pooled_dim == pooled


@pytest.mark.parametrize("name,layers", [(name, layers) for name, layers, *_ in REAL])
def test_pivot_hooks_cover_real_config(name, layers):
    denoiser = load_reference(name).build_denoiser()
    context = PivotContext()
    with pivot_processors(cross_attention_modules(denoiser), context):
        installed = [m for m in denoiser.modules() if isinstance(getattr(m, "processor", None), PivotAttnProcessor)]
        assert len(installed) == layers
        assert context.projection is not None


def test_real_config_conditioning_widths():
    sdxl = load_reference("sdxl").denoiser
    pixart = load_reference("pixart-alpha-512").build_denoiser()
    assert sdxl["projection_class_embeddings_input_dim"] - 6 * sdxl["addition_time_embed_dim"] == 1280
    assert pixart.caption_projection.linear_1.in_features == 4096


def test_every_real_family_has_config():
    for name in ("sd1", "sd2", "sdxl", "pixart"):
        assert BACKBONES.get(name).reference is not None, name


def test_backbones_list_command():
    result = runner.invoke(app, ["backbones", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:6]]
            for line in result.output.splitlines() if line.startswith("│") and line.split("│")[1].strip()}
    assert rows["sd1"][1:] == ["768", "-", "16"]
    assert rows["sd2"][1:] == ["1024", "-", "16"]
    assert rows["sdxl"][1:] == ["2048", "1280", "70"]
    assert rows["pixart"][1:] == ["4096", "-", "28"]


@pytest.mark.parametrize("family,pipeline_family", [("tiny-sd2", "sd2"), ("tiny-sdxl", "sdxl"),
                                                    ("tiny-pixart", "pixart")])
def test_auto_detects_tiny_folders(tiny, family, pipeline_family):
    assert detect_family(tiny[family].source) == pipeline_family
    assert load_backbone("auto", str(tiny[family].source)).family == pipeline_family


def test_auto_detects_sd1(tiny_backbone_dir):
    assert detect_family(tiny_backbone_dir) == "sd1"


def test_unsupported_pipeline_class(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(UnsupportedModelError) as error:
        load_backbone("auto", str(tmp_path))
    assert "FluxPipeline" in str(error.value)
    for supported in ("StableDiffusionXLPipeline", "PixArtAlphaPipeline", "sd2"):
        assert supported in str(error.value)


def test_family_mismatch_rejected(tiny):
    with pytest.raises(UnsupportedModelError) as error:
        load_backbone("sd1", str(tiny["tiny-sdxl"].source))
    assert "StableDiffusionXLPipeline" in str(error.value)


def test_unknown_family_lists_families(tmp_path, small_triplets):
    result = runner.invoke(app, ["transfer", "--lang", "zh", "--recipe", "demo", "--output", str(tmp_path / "r"),
                                 "--data", str(small_triplets), "--set", "backbone.family=sd3"])
    assert result.exit_code == 2
    for family in ("sd1", "sd2", "sdxl", "pixart"):
        assert family in result.output


def test_sd2_teacher_matches_pipeline(tiny):
    backbone = tiny["tiny-sd2"]
    expected, _ = backbone.pipeline("ddim").encode_prompt(["a bear", "two dogs"], "cpu", 1, False)
    assert torch.equal(backbone.encode_teacher(["a bear", "two dogs"]).sequence, expected)


def test_sd2_stored_encoder_is_read_last(tiny):
    backbone = tiny["tiny-sd2"]
    tokens = backbone.tokenizer(["a bear"], padding="max_length", max_length=backbone.max_length,
                                return_tensors="pt")
    with torch.no_grad():
        output = backbone.text_encoder(tokens.input_ids, output_hidden_states=True)
    sequence = backbone.encode_teacher(["a bear"]).sequence
    assert torch.equal(sequence, output.last_hidden_state)
    assert not torch.equal(sequence, output.hidden_states[-2])


def test_sdxl_teacher_matches_pipeline(tiny):
    backbone = tiny["tiny-sdxl"]
    expected, _, pooled, _ = backbone.pipeline("euler").encode_prompt(["a bear", "two dogs"], device="cpu",
                                                                      do_classifier_free_guidance=False)
    ours = backbone.encode_teacher(["a bear", "two dogs"])
    assert ours.sequence.shape[-1] == backbone.context_dim
    assert torch.equal(ours.sequence, expected)
    assert torch.equal(ours.pooled, pooled)


def test_pixart_teacher_matches_pipeline(tiny):
    backbone = tiny["tiny-pixart"]
    expected, mask, _, _ = backbone.pipeline("dpm++").encode_prompt(
        ["A Bear ", "two dogs"], do_classifier_free_guidance=False, device="cpu", clean_caption=False,
        max_sequence_length=backbone.max_length)
    ours = backbone.encode_teacher(["A Bear ", "two dogs"])
    assert torch.equal(ours.sequence, expected)
    assert torch.equal(ours.mask, mask)


def test_v_prediction_target(tiny):
    backbone = tiny["tiny-sd2"]
    teacher = backbone.encode_teacher(["a bear", "a boat"])
    inputs = noisy_inputs(backbone, teacher, teacher)
    expected = backbone.noise_scheduler().get_velocity(inputs.latents, inputs.noise, inputs.timesteps)
    assert backbone.scheduler_config["prediction_type"] == "v_prediction"
    assert torch.equal(denoise_target(backbone, inputs), expected)
    assert backbone.pipeline("pndm").scheduler.config.prediction_type == "v_prediction"


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_processors_keep_denoiser_output(tiny, family):
    backbone = tiny[family]
    teacher = backbone.encode_teacher(["a bear", "a boat on a lake"])
    inputs = noisy_inputs(backbone, teacher, teacher)
    with torch.no_grad():
        plain = backbone.denoise(inputs.noisy_latents, inputs.timesteps, teacher)
        with pivot_processors(backbone.cross_attention_layers(), PivotContext()):
            hooked = backbone.denoise(inputs.noisy_latents, inputs.timesteps, teacher)
    torch.testing.assert_close(hooked, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_teacher_as_student_has_zero_pivot_loss(tiny, family):
    backbone = tiny[family]
    teacher = backbone.encode_teacher(["a bear", "a boat on a lake"])
    context = PivotContext()
    with pivot_processors(backbone.cross_attention_layers(), context):
        loss = pivot_loss(backbone, context, noisy_inputs(backbone, teacher, teacher), grad=False)
    assert loss.item() < 1e-8


def test_pixart_student_mask_reaches_attention(tiny):
    backbone = tiny["tiny-pixart"]
    teacher = backbone.encode_teacher(["a bear", "a boat on a lake"])
    unmasked = TextConditioning(teacher.sequence, mask=torch.ones_like(teacher.mask))
    context = PivotContext()
    with pivot_processors(backbone.cross_attention_layers(), context):
        loss = pivot_loss(backbone, context, noisy_inputs(backbone, teacher, unmasked), grad=False)
    assert loss.item() > 1e-6


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_training_step_changes_only_student(tiny, demo_rows, family):
    from polyiap.encoders import build_student
    from polyiap.recipes.schema import StudentConfig

    backbone = tiny[family]
    student = build_student(StudentConfig(tiny_layers=1), 16, backbone.context_dim, [r["zh"] for r in demo_rows],
                            seed=0, pooled_dim=backbone.pooled_dim, output_mask=backbone.uses_text_mask)
    frozen = {f"{m}.{n}": p.detach().clone() for m, module in backbone.frozen_modules().items()
              for n, p in module.state_dict().items()}
    before = {n: p.detach().clone() for n, p in student.state_dict().items()}
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)

    tokens = student.tokenize(["一只熊", "一艘船"])
    inputs = noisy_inputs(backbone, backbone.encode_teacher(["a bear", "a boat"]), student(**tokens, conditioning=True))
    context = PivotContext()
    with pivot_processors(backbone.cross_attention_layers(), context):
        PivotLoss(backbone, context)(inputs).backward()
    optimizer.step()

    after = {f"{m}.{n}": p for m, module in backbone.frozen_modules().items() for n, p in module.state_dict().items()}
    assert all(torch.equal(frozen[name], after[name]) for name in frozen)
    assert any(not torch.equal(before[n], p) for n, p in student.state_dict().items())
    if backbone.pooled_dim:
        assert student.pooled_head.weight.grad is not None


def test_pooled_term_weighted(tiny, demo_rows):
    from polyiap.encoders import build_student
    from polyiap.recipes.schema import StudentConfig

    backbone = tiny["tiny-sdxl"]
    student = build_student(StudentConfig(tiny_layers=1), 16, backbone.context_dim, [r["zh"] for r in demo_rows],
                            seed=0, pooled_dim=backbone.pooled_dim)
    with torch.no_grad():
        conditioning = student.encode(["一只熊", "一艘船"])
    inputs = noisy_inputs(backbone, backbone.encode_teacher(["a bear", "a boat"]), conditioning)
    expected = torch.nn.functional.mse_loss(conditioning.pooled, inputs.teacher.pooled)
    context = PivotContext()
    with torch.no_grad(), pivot_processors(backbone.cross_attention_layers(), context):
        without = PivotLoss(backbone, context, pooled_weight=0.0)(inputs)
        weighted = PivotLoss(backbone, context, pooled_weight=2.0)(inputs)
    torch.testing.assert_close(weighted - without, 2.0 * expected)


def test_student_heads_round_trip(tmp_path, demo_rows):
    from polyiap.encoders import StudentEncoder, build_student
    from polyiap.recipes.schema import StudentConfig

    student = build_student(StudentConfig(tiny_layers=1), 16, 48, [r["zh"] for r in demo_rows], seed=0,
                            pooled_dim=16, output_mask=True)
    student.save(tmp_path / "student")
    loaded = StudentEncoder.load(tmp_path / "student").eval()
    student.eval()
    with torch.no_grad():
        ours, theirs = student.encode(["一只熊"]), loaded.encode(["一只熊"])
    assert torch.equal(ours.pooled, theirs.pooled)
    assert torch.equal(ours.mask, theirs.mask)
    assert ours.mask.shape == (1, 16)


def digest(folder) -> str:
    files = sorted(p for p in folder.rglob("*.safetensors"))
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_transfer_and_generate(tiny, tmp_path, small_triplets, family):
    run, images = tmp_path / "run", tmp_path / "images"
    backbone_before = digest(tiny[family].source)
    result = runner.invoke(app, [
        "transfer", "--lang", "zh", "--recipe", "demo", "--output", str(run), "--data", str(small_triplets),
        "--set", f"backbone.family={family}", "--set", "train.max_steps=6", "--set", "train.batch_size=4",
        "--set", "train.eval_every=3", "--set", "data.heldout_images=2", "--set", "samples.num_prompts=0",
        "--set", "student.tiny_layers=1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    heldout = [r["heldout_pivot_loss"] for r in records if "heldout_pivot_loss" in r]
    assert heldout[-1] < heldout[0]
    assert digest(tiny[family].source) == backbone_before

    result = runner.invoke(app, ["generate", "--model", str(run), "--prompt", "一只熊", "--output", str(images),
                                 "--steps", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads((images / "generate.json").read_text())
    assert (images / record["images"][0]["file"]).is_file()
