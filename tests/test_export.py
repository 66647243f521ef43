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
