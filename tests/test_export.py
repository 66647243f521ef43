"""`polyiap export`: a stock diffusers pipeline folder that gives `polyiap generate`'s images without polyiap."""

import hashlib
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from polyiap.cli.app import app
from polyiap.generate import SamplerSettings, generate_images, load_student_and_backbone

runner = CliRunner()
REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
STOCK_SCRIPT = REPO / "examples" / "stock_diffusers.py"
FEW_STEPS = SamplerSettings(scheduler="pndm", steps=3, guidance=7.5, unconditional="student")


@pytest.fixture(scope="module")
def loaded(trained_run):
    return load_student_and_backbone(trained_run)


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    output = tmp_path_factory.mktemp("export") / "pipeline"
    result = runner.invoke(app, ["export", "--model", str(trained_run), "--output", str(output)])
    assert result.exit_code == 0, result.output
    return output


def run_stock(pipeline, prompt, output, *extra):
    """Run the repository's stock-diffusers script in a fresh interpreter and return its output."""
    command = [sys.executable, str(STOCK_SCRIPT), "--pipeline", str(pipeline), "--prompt", prompt, "--seed", "5",
               "--steps", "3", "--guidance", "7.5", "--output", str(output), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("prompt,negative", [("一只熊", ""), ("一隻熊 站在ＲＥＤ car 旁", "模糊")])
def test_stock_pipeline_same_image(loaded, exported, tmp_path, prompt, negative):
    student, backbone, _ = loaded
    extra = ["--negative-prompt", negative] if negative else []
    stdout = run_stock(exported, prompt, tmp_path / "stock.png", *extra)
    ours = generate_images(student, backbone, [prompt], FEW_STEPS, negative_prompt=negative, seed=5)[0][0]
    assert "polyiap imported: False" in stdout
    with Image.open(tmp_path / "stock.png") as stock:
        assert np.array_equal(pixels(stock), pixels(ours))


def test_base_components_byte_identical(loaded, exported):
    _, backbone, _ = loaded
    for component in ("unet", "vae", "scheduler"):
        files = sorted(p.relative_to(backbone.source) for p in (backbone.source / component).rglob("*") if p.is_file())
        assert files, component
        for name in files:
            assert digest(exported / name) == digest(backbone.source / name), name


def test_model_index_names_stock_classes(exported):
    index = json.loads((exported / "model_index.json").read_text())
    assert index["text_encoder"] == ["transformers", "BertForTokenClassification"]
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]


def test_export_record(exported, trained_run):
    record = json.loads((exported / "polyiap_export.json").read_text(encoding="utf-8"))
    assert record["max_length"] == 32
    assert record["sampler"]["scheduler"] == "pndm"
    assert record["notes"] == []


def test_nonempty_output_needs_force(trained_run, exported):
    before = digest(exported / "text_encoder" / "model.safetensors")
    result = runner.invoke(app, ["export", "--model", str(trained_run), "--output", str(exported)])
    assert result.exit_code == 2
    assert "pass --force" in result.output
    assert digest(exported / "text_encoder" / "model.safetensors") == before


def test_force_replaces_folder(trained_run, tmp_path):
    output = tmp_path / "pipeline"
    output.mkdir()
    (output / "old.txt").write_text("old")
    result = runner.invoke(app, ["export", "--model", str(trained_run), "--output", str(output), "--force"])
    assert result.exit_code == 0, result.output
    assert not (output / "old.txt").exists()
    assert (output / "model_index.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["pipeline"]  # no staging folder left behind


def test_failed_export_leaves_nothing(loaded, tmp_path, monkeypatch):
    from polyiap.export import pipeline as export_module

    student, backbone, settings = loaded

    def fail(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "write_student_components", fail)
    with pytest.raises(RuntimeError):
        export_module.export_pipeline(student, backbone, settings, tmp_path / "pipeline")
    assert list(tmp_path.iterdir()) == []


def test_teacher_unconditional_warns(loaded, tmp_path, caplog):
    from dataclasses import replace

    from polyiap.export import export_pipeline

    student, backbone, settings = loaded
    with caplog.at_level(logging.WARNING, logger="polyiap"):
        notes = export_pipeline(student, backbone, replace(settings), tmp_path / "pipeline", empty_prompt_rate=0.0)
    assert len(notes) == 1
    assert "relied on the teacher's unconditional embedding" in caplog.text
    assert "data.empty_prompt_rate 0" in notes[0]


def test_projection_student_round_trip(tiny_backbone, bert_student_dir, tmp_path):
    from diffusers import DiffusionPipeline

    from polyiap.encoders import build_student
    from polyiap.export import export_pipeline
    from polyiap.recipes.schema import StudentConfig

    metadata = {"language": "zh", "normalization": {"opencc": "t2s"}}
    student = build_student(StudentConfig(init=str(bert_student_dir)), 24, 64, [], seed=0, metadata=metadata).eval()
    assert student.projection is not None
    export_pipeline(student, tiny_backbone, FEW_STEPS, tmp_path / "pipeline")
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "pipeline")
    with torch.no_grad():
        stock, _ = pipe.encode_prompt("兩隻狗在雪地裡玩", "cpu", 1, False)
        ours = student.encode(["两只狗在雪地里玩"]).sequence
    assert stock.shape == (1, 24, 64)
    torch.testing.assert_close(stock, ours, rtol=0, atol=0)


def test_clip_student_with_projection_rejected(tiny_backbone):
    from transformers import CLIPTextConfig, CLIPTextModel

    from polyiap.encoders import StudentEncoder
    from polyiap.export import ExportError, stock_text_encoder

    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, max_position_embeddings=77))
    student = StudentEncoder(encoder, tiny_backbone.tokenizer, 64, 77, False, "clip-text")
    with pytest.raises(ExportError, match="without remote code"):
        stock_text_encoder(student)


def test_tokenizer_normalizer_matches_pack(demo_rows):
    import opencc

    from polyiap.packs import load_pack, normalize_text
    from polyiap.packs.normalize import tokenizer_normalizer

    rules = load_pack("zh").normalization
    normalizer = tokenizer_normalizer(rules)
    to_traditional = opencc.OpenCC("s2t")
    texts = [row["zh"] for row in demo_rows] + ["Ｂｅａｒ 一隻  熊 on the 草地", "  ", "臺灣的一輛紅色汽車"]
    texts += [to_traditional.convert(text) for text in texts]
    mismatches = [text for text in texts if normalizer.normalize_str(text) != normalize_text(text, rules)]
    assert mismatches == []


def test_unknown_format_rejected(trained_run, tmp_path):
    result = runner.invoke(app, ["export", "--model", str(trained_run), "--output", str(tmp_path / "x"),
                                 "--format", "onnx"])
    assert result.exit_code == 2
    assert "--format 'onnx' is not supported" in result.output


FAMILIES = ["tiny-sd2", "tiny-sdxl", "tiny-pixart"]


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory, small_triplets):
    """One two-step run per tiny family, trained lazily and exported once, keyed by family."""
    cache = {}

    def get(family):
        if family not in cache:
            folder = tmp_path_factory.mktemp(family)
            run, output = folder / "run", folder / "pipeline"
            result = runner.invoke(app, [
                "transfer", "--lang", "zh", "--recipe", "demo", "--output", str(run), "--data", str(small_triplets),
                "--set", f"backbone.family={family}", "--set", "train.max_steps=2", "--set", "train.batch_size=4",
                "--set", "data.heldout_images=2", "--set", "samples.num_prompts=0", "--set", "student.tiny_layers=1"])
            assert result.exit_code == 0, result.output
            result = runner.invoke(app, ["export", "--model", str(run), "--output", str(output)])
            assert result.exit_code == 0, result.output
            cache[family] = run, output
        return cache[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_family_stock_same_image(family_runs, tmp_path, family):
    run, exported = family_runs(family)
    student, backbone, settings = load_student_and_backbone(run)
    prompt, negative = "一隻熊 站在ＲＥＤ car 旁", "模糊"
    stdout = run_stock(exported, prompt, tmp_path / "stock.png", "--negative-prompt", negative, "--run-scheduler")
    ours = generate_images(student, backbone, [prompt], FEW_STEPS, negative_prompt=negative, seed=5)[0][0]
    assert "polyiap imported: False" in stdout
    with Image.open(tmp_path / "stock.png") as stock:
        assert np.array_equal(pixels(stock), pixels(ours))


@pytest.mark.parametrize("family", ["tiny-sdxl", "tiny-pixart"])
def test_family_empty_negative_same_image(family_runs, tmp_path, family):
    run, exported = family_runs(family)
    student, backbone, _ = load_student_and_backbone(run)
    stdout = run_stock(exported, "一只熊", tmp_path / "stock.png", "--run-scheduler")
    ours = generate_images(student, backbone, ["一只熊"], FEW_STEPS, seed=5)[0][0]
    assert "polyiap imported: False" in stdout
    with Image.open(tmp_path / "stock.png") as stock:
        assert np.array_equal(pixels(stock), pixels(ours))


def test_sd2_keeps_v_prediction(family_runs):
    _, exported = family_runs("tiny-sd2")
    scheduler = json.loads((exported / "scheduler" / "scheduler_config.json").read_text())
    index = json.loads((exported / "model_index.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
    assert index["text_encoder"] == ["transformers", "BertForTokenClassification"]


def test_sdxl_layout(family_runs):
    _, exported = family_runs("tiny-sdxl")
    index = json.loads((exported / "model_index.json").read_text())
    record = json.loads((exported / "polyiap_export.json").read_text(encoding="utf-8"))
    assert index["text_encoder"] == [None, None]
    assert index["tokenizer"] == [None, None]
    assert index["text_encoder_2"] == ["polyiap_sdxl_text_encoder", "PolyiapSDXLTextEncoder"]
    assert (exported / "text_encoder_2" / "polyiap_sdxl_text_encoder.py").is_file()
    assert index["force_zeros_for_empty_prompt"] is False
    assert record["load_options"] == {"trust_remote_code": True}
    assert any("trust_remote_code=True" in note for note in record["notes"])


def test_sdxl_needs_trust_remote_code(family_runs):
    from diffusers import DiffusionPipeline

    _, exported = family_runs("tiny-sdxl")
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(exported)


def test_sdxl_encoder_matches_student(family_runs):
    from diffusers import DiffusionPipeline

    run, exported = family_runs("tiny-sdxl")
    student, _, _ = load_student_and_backbone(run)
    pipe = DiffusionPipeline.from_pretrained(exported, trust_remote_code=True)
    with torch.no_grad():
        sequence, _, pooled, _ = pipe.encode_prompt("兩隻狗在雪地裡玩", device="cpu", do_classifier_free_guidance=False)
        ours = student.encode(["两只狗在雪地里玩"])
    assert pipe.text_encoder_2.config.projection_dim == 16
    torch.testing.assert_close(sequence, ours.sequence, rtol=0, atol=0)
    torch.testing.assert_close(pooled, ours.pooled, rtol=0, atol=0)


def test_sdxl_teacher_unconditional_keeps_zeros(family_runs, tmp_path):
    from polyiap.export import export_pipeline

    run, _ = family_runs("tiny-sdxl")
    student, backbone, settings = load_student_and_backbone(run)
    student.metadata["unconditional"] = "teacher"
    notes = export_pipeline(student, backbone, settings, tmp_path / "pipeline")
    index = json.loads((tmp_path / "pipeline" / "model_index.json").read_text())
    zeros = backbone.teacher_unconditional(2)
    assert index["force_zeros_for_empty_prompt"] is True
    assert any("force_zeros_for_empty_prompt stays true" in note for note in notes)
    assert zeros.sequence.shape == (2, backbone.max_length, backbone.context_dim)
    assert not zeros.sequence.any()
    assert not zeros.pooled.any()


def test_sdxl_single_file_rejected(family_runs, tmp_path):
    run, _ = family_runs("tiny-sdxl")
    result = runner.invoke(app, ["export", "--model", str(run), "--output", str(tmp_path / "te.safetensors"),
                                 "--format", "single-file"])
    assert result.exit_code == 2
    assert "pooled head" in result.output
    assert not (tmp_path / "te.safetensors").exists()


def test_pixart_call_options(family_runs):
    _, exported = family_runs("tiny-pixart")
    record = json.loads((exported / "polyiap_export.json").read_text(encoding="utf-8"))
    index = json.loads((exported / "model_index.json").read_text())
    assert record["call_options"] == {"clean_caption": False, "max_sequence_length": 32,
                                      "use_resolution_binning": False}
    assert index["text_encoder"] == ["transformers", "BertForTokenClassification"]
    assert index["transformer"] == ["diffusers", "PixArtTransformer2DModel"]


def test_pixart_unmasked_student_rejected(demo_rows, tmp_path):
    from polyiap.backbones import load_backbone
    from polyiap.encoders import build_student
    from polyiap.export import ExportError, export_pipeline
    from polyiap.recipes.schema import StudentConfig

    backbone = load_backbone("tiny-pixart", None)
    config = StudentConfig(tiny_layers=1, attention_mask=False)
    student = build_student(config, 16, backbone.context_dim, [r["zh"] for r in demo_rows], seed=0, output_mask=True)
    with pytest.raises(ExportError, match="student.attention_mask: true"):
        export_pipeline(student, backbone, FEW_STEPS, tmp_path / "pipeline")
    assert list(tmp_path.iterdir()) == []
