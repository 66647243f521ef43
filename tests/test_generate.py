"""`polyiap generate`: student embeddings through the backbone's pipeline, prompt handling."""

import json
import logging

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from polyiap.cli.app import app
from polyiap.generate import PromptEncoder, SamplerSettings, generate_images, load_student_and_backbone

runner = CliRunner()
FEW_STEPS = SamplerSettings(scheduler="pndm", steps=3, guidance=7.5, unconditional="student")


@pytest.fixture(scope="module")
def loaded(trained_run):
    return load_student_and_backbone(trained_run)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_settings_come_from_recipe(loaded):
    _, backbone, settings = loaded
    assert (settings.scheduler, settings.steps, settings.guidance, settings.unconditional) == ("pndm", 20, 7.5,
                                                                                                "student")
    assert backbone.family == "tiny"


def test_generate_matches_pipeline_by_hand(loaded):
    student, backbone, _ = loaded
    ours = generate_images(student, backbone, ["一只熊"], FEW_STEPS, seed=5)[0][0]

    pipeline = backbone.pipeline("pndm")
    pipeline.set_progress_bar_config(disable=True)
    with torch.no_grad():
        positive = student.encode(["一只熊"]).sequence
        negative = student.encode([""]).sequence
        by_hand = pipeline(prompt_embeds=positive, negative_prompt_embeds=negative, num_inference_steps=3,
                           guidance_scale=7.5, generator=[torch.Generator().manual_seed(5)],
                           height=backbone.resolution, width=backbone.resolution).images[0]
    assert np.array_equal(pixels(ours), pixels(by_hand))


def test_image_independent_of_batch(loaded):
    student, backbone, _ = loaded
    alone = generate_images(student, backbone, ["一艘船"], FEW_STEPS, seed=3)[0][0]
    batched = generate_images(student, backbone, ["一只熊", "一艘船"], FEW_STEPS, seed=3)[1][0]
    # Batched matrix products round differently, so a pixel may move by a level or two.
    assert np.abs(pixels(alone) - pixels(batched)).max() <= 2


def test_traditional_chinese_normalised(loaded):
    student, backbone, _ = loaded
    encoder = PromptEncoder(student, backbone, "student")
    assert encoder.normalize(["一隻 熊"]) == ["一只熊"]
    simplified = generate_images(student, backbone, ["一只熊"], FEW_STEPS, seed=1)[0][0]
    traditional = generate_images(student, backbone, ["一隻熊"], FEW_STEPS, seed=1)[0][0]
    assert np.array_equal(pixels(simplified), pixels(traditional))


def test_long_prompt_truncated_with_warning(loaded, caplog):
    student, backbone, _ = loaded
    encoder = PromptEncoder(student, backbone, "student")
    with caplog.at_level(logging.WARNING, logger="polyiap"):
        encoder.normalize(["熊" * 50])
    assert "dropped up to 20 tokens" in caplog.text  # 50 characters + [CLS] + [SEP] - 32
    positive, _ = encoder.encode(["熊" * 50], "")
    assert positive.shape[1] == student.max_length


def test_empty_prompt_is_the_unconditional(loaded):
    student, backbone, _ = loaded
    positive, negative = PromptEncoder(student, backbone, "student").encode([""], "")
    assert torch.equal(positive, negative)


def test_teacher_unconditional_needs_same_length(loaded):
    from polyiap.errors import IncompatibleModelsError

    student, backbone, _ = loaded
    # The demo student pads to 32 tokens and the teacher to 77, so their embeddings cannot be mixed.
    with pytest.raises(IncompatibleModelsError, match="pads to 32 tokens and the teacher to 77"):
        PromptEncoder(student, backbone, "teacher")


def test_generate_command_writes_files(trained_run, tmp_path):
    output = tmp_path / "out"
    result = runner.invoke(app, ["generate", "--model", str(trained_run), "--prompt", "一只熊", "--prompt", "海边的船",
                                 "--num-images", "2", "--steps", "2", "--seed", "7", "--output", str(output)])
    assert result.exit_code == 0, result.output
    record = json.loads((output / "generate.json").read_text(encoding="utf-8"))
    assert record["steps"] == 2
    assert sorted(p.name for p in output.glob("*.png")) == ["000-seed7.png", "000-seed8.png", "001-seed7.png",
                                                           "001-seed8.png"]


def test_generate_records_normalized_prompt(trained_run, tmp_path):
    from PIL import Image

    output = tmp_path / "out"
    result = runner.invoke(app, ["generate", "--model", str(trained_run), "--prompt", "一隻熊", "--prompt", " ",
                                 "--steps", "2", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "empty --prompt gives the unconditional image" in result.output
    record = json.loads((output / "generate.json").read_text(encoding="utf-8"))
    assert record["images"][0]["prompt"] == "一隻熊"
    assert record["images"][0]["normalized_prompt"] == "一只熊"
    with Image.open(output / "000-seed0.png") as image:
        assert image.text == {"prompt": "一隻熊", "normalized_prompt": "一只熊", "seed": "0"}


def test_generate_rejects_non_run_folder(tmp_path):
    result = runner.invoke(app, ["generate", "--model", str(tmp_path), "--prompt", "一只熊", "--output",
                                 str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "neither a run folder nor a student folder" in result.output


def test_teacher_unconditional_embedding(tiny_backbone, demo_rows):
    from polyiap.encoders import build_student
    from polyiap.recipes.schema import StudentConfig

    student = build_student(StudentConfig(), 77, 64, [row["zh"] for row in demo_rows], seed=0).eval()
    positive, negative = PromptEncoder(student, tiny_backbone, "teacher").encode(["一只熊"], "")
    assert positive.shape == negative.shape
    assert torch.equal(negative, tiny_backbone.encode_teacher([""]).sequence)
    _, with_negative = PromptEncoder(student, tiny_backbone, "teacher").encode(["一只熊"], "模糊")
    assert torch.equal(with_negative, student.encode(["模糊"]).sequence)


def test_long_prompt_and_negative_warn_once(loaded, caplog):
    student, backbone, _ = loaded
    encoder = PromptEncoder(student, backbone, "student")
    with caplog.at_level(logging.WARNING, logger="polyiap"):
        encoder.encode(["熊" * 40], "模糊" * 20)
        encoder.encode(["熊" * 40], "")
    warnings = [record for record in caplog.records if "exceed the student's" in record.getMessage()]
    assert len(warnings) == 1
    assert "2 prompt(s)" in warnings[0].getMessage()
    assert "dropped up to 10 tokens" in warnings[0].getMessage()  # 40 characters + [CLS] + [SEP] - 32


def test_mixed_language_prompt_normalised(loaded):
    student, backbone, _ = loaded
    encoder = PromptEncoder(student, backbone, "student")
    assert encoder.normalize(["一隻 ＲＥＤ  car 在 路上"]) == ["一只 RED car 在路上"]
    positive, _ = encoder.encode(["一隻 ＲＥＤ  car 在 路上"], "")
    assert torch.equal(positive, student.encode(["一只 RED car 在路上"]).sequence)
