"""`polyiap eval`: suites, FID and CLIP score against reference computations, resume, baselines, report."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from polyiap.cli.app import app
from polyiap.errors import DataError, PolyiapError
from polyiap.eval.clip_score import ClipScorer
from polyiap.eval.fid import compute_fid, find_inception_weights
from polyiap.eval.runner import EvalRun, Scorers, run_eval
from polyiap.eval.suites import load_suite
from polyiap.eval.systems import StudentSystem, TeacherSystem
from polyiap.packs import load_pack
from polyiap.recipes import load_recipe

runner = CliRunner()
FEW_STEPS = {"steps": 2}


@pytest.fixture(scope="module")
def zh():
    return load_pack("zh")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def noise_images(folder: Path, count: int, seed: int, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def eval_args(run: Path, output: Path, scorers: dict, *extra: str) -> list[str]:
    return ["eval", "--lang", "zh", "--model", str(run), "--suite", "demo", "--output", str(output),
            "--inception-weights", str(scorers["inception"]), "--clip-model", str(scorers["clip"]),
            "--steps", "2", *extra]


# Suites ---------------------------------------------------------------------------------------------------

def test_demo_suite_has_one_caption_per_shipped_photo(zh):
    suite = load_suite(zh, "demo")
    assert len(suite.items) == 111
    assert len({item.reference for item in suite.items}) == 111
    assert all(item.reference.is_file() and item.english for item in suite.items)
    assert [item.index for item in suite.items] == list(range(111))


def test_limit_keeps_the_first_captions_and_their_indices(zh):
    assert [item.index for item in load_suite(zh, "demo", limit=5).items] == [0, 1, 2, 3, 4]


def test_coco_cn_rows_are_normalised(zh, tmp_path):
    images = tmp_path / "coco" / "val2014"
    noise_images(images, 1, seed=0)
    (images / "000.png").rename(images / "COCO_val2014_000000000001.jpg")
    captions = write_jsonl(tmp_path / "coco-cn.jsonl", [
        {"image_file": "COCO_val2014_000000000001.jpg", "zh_human_written": ["一個 女孩 走 下 臺階", "另一句"]}])
    suite = load_suite(zh, "coco-cn", captions=captions, images=tmp_path / "coco")
    # found below the folder by file name; word segmentation removed; traditional written as simplified
    assert suite.items[0].caption == "一个女孩走下台阶"
    assert suite.items[0].reference == images / "COCO_val2014_000000000001.jpg"


def test_aic_icc_format(zh, tmp_path):
    noise_images(tmp_path / "images", 2, seed=0)
    captions = tmp_path / "aic.json"
    captions.write_text(json.dumps([{"image_id": "000.png", "caption": ["两个人在海边", "海边"]},
                                    {"image_id": "001.png", "caption": ["一只猫"]}], ensure_ascii=False))
    suite = load_suite(zh, "aic-icc", captions=captions, images=tmp_path / "images")
    assert [item.caption for item in suite.items] == ["两个人在海边", "一只猫"]


def test_suite_without_path_names_the_option(zh):
    with pytest.raises(DataError, match="coco-cn.*--captions PATH"):
        load_suite(zh, "coco-cn")


def test_missing_suite_path_is_an_error(zh, tmp_path):
    with pytest.raises(DataError, match="not found: .*nowhere.jsonl"):
        load_suite(zh, "coco-cn", captions=tmp_path / "nowhere.jsonl", images=tmp_path)


def test_unknown_suite_lists_declared_ones(zh):
    with pytest.raises(DataError, match="declared: aic-icc, coco-cn, demo, miniworld, miniworld-held-out, mscoco-zh"):
        load_suite(zh, "xtd10")


def test_missing_reference_images_are_an_error(zh, tmp_path):
    captions = write_jsonl(tmp_path / "c.jsonl", [{"image_file": "absent.jpg", "zh_human_written": ["一只猫"]}])
    with pytest.raises(DataError, match="1 reference image.*absent.jpg.*--images"):
        load_suite(zh, "coco-cn", captions=captions, images=tmp_path)


def test_empty_caption_file_is_an_error(zh, tmp_path):
    captions = tmp_path / "empty.jsonl"
    captions.write_text("")
    with pytest.raises(DataError, match="contains no captions"):
        load_suite(zh, "coco-cn", captions=captions, images=tmp_path)


# Scorers --------------------------------------------------------------------------------------------------

def test_fid_agrees_with_torch_fidelity_on_folders(tmp_path, random_scorers):
    import torch_fidelity

    first = noise_images(tmp_path / "a", 12, seed=1)
    second = noise_images(tmp_path / "b", 12, seed=2)
    weights = find_inception_weights(random_scorers["inception"])
    direct = torch_fidelity.calculate_metrics(input1=str(tmp_path / "a"), input2=str(tmp_path / "b"), fid=True,
                                              feature_extractor_weights_path=str(weights.path), cuda=False,
                                              verbose=False, save_cpu_ram=True)
    ours = compute_fid(first, second, weights)
    assert ours > 0
    assert ours == pytest.approx(direct["frechet_inception_distance"], rel=1e-6)
    assert not weights.official


def test_missing_inception_weights_name_the_file(tmp_path):
    with pytest.raises(PolyiapError, match="weights.pth is not a file.*weights-inception-2015-12-05"):
        find_inception_weights(tmp_path / "weights.pth")


def test_clip_score_equals_hand_computation(tmp_path, random_scorers):
    scorer = ClipScorer(str(random_scorers["clip"]))
    assert scorer.random_init
    files = noise_images(tmp_path / "images", 6, seed=3)
    captions = ["一只猫坐在桌子上", "两个人在海边", "一碗水果", "雪地里的男人", "一辆红色的车", "草地上的熊"]
    model, processor = scorer.model, scorer.processor

    def by_hand() -> torch.Tensor:
        with torch.no_grad():
            pixels = processor.image_processor(images=[Image.open(f).convert("RGB") for f in files],
                                               return_tensors="pt")["pixel_values"]
            image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
            tokens = processor.tokenizer(captions, padding=True, return_tensors="pt")
            text = model.text_projection(model.text_model(**tokens).last_hidden_state[:, 0])
        return torch.nn.functional.cosine_similarity(image, text, dim=-1)

    cosine = by_hand()
    assert scorer.scores(files, captions) == pytest.approx((100 * cosine.clamp(min=0)).tolist(), abs=1e-4)
    with torch.no_grad():
        model.text_projection.weight.neg_()  # flips the sign of every cosine: negative ones count as 0
    flipped = by_hand()
    assert (flipped < 0).any()
    assert scorer.scores(files, captions) == pytest.approx((100 * flipped.clamp(min=0)).tolist(), abs=1e-4)


# The eval command -----------------------------------------------------------------------------------------

def test_eval_demo_suite_writes_metrics_and_report(trained_run, random_scorers, tmp_path):
    output = tmp_path / "eval"
    result = runner.invoke(app, eval_args(trained_run, output, random_scorers, "--limit", "8"))
    assert result.exit_code == 0, result.output
    record = json.loads((output / "metrics.json").read_text())
    assert set(record["metrics"]) == {"fid", "clip_score"}
    assert record["metrics"]["fid"] > 0
    assert record["sampling"]["steps"] == 2
    assert record["sampling"]["scheduler"] == "pndm"
    assert record["suite"]["count"] == 8
    assert record["model"]["kind"] == "student"
    assert record["comparable_to_published"] is False
    assert any("randomly initialised" in reason for reason in record["not_comparable_because"])
    assert record["versions"]["torch-fidelity"]
    assert len(list((output / "images").glob("*.png"))) == 8
    report = (output / "report.html").read_text()
    assert "Not comparable to published numbers" in report
    assert "images/00007.png" in report


def test_report_renders_in_headless_chromium(trained_run, random_scorers, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium package)")
    output = tmp_path / "eval"
    assert runner.invoke(app, eval_args(trained_run, output, random_scorers, "--limit", "4")).exit_code == 0
    screenshot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,900",
                    f"--screenshot={screenshot}", (output / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape == (900, 1000, 3)
    banner = (pixels == (255, 243, 205)).all(axis=-1)  # the not-comparable warning's background
    assert banner.sum() > 10_000


class Interrupted(Exception):
    pass


class FailsAfter:
    """Wraps a system and raises after ``batches`` generation calls, like a run killed half-way."""

    def __init__(self, system, batches: int):
        self.system, self.batches, self.calls = system, batches, []

    def __getattr__(self, name):
        return getattr(self.system, name)

    def generate(self, prompts, seeds):
        if len(self.calls) == self.batches:
            raise Interrupted
        self.calls.append(list(seeds))
        return self.system.generate(prompts, seeds)


def test_interrupted_eval_resumes_without_regenerating(trained_run, random_scorers, zh, tmp_path):
    suite = load_suite(zh, "demo", limit=6)
    scorers = Scorers.resolve(["clip_score"], None, str(random_scorers["clip"]))
    student = StudentSystem.open(trained_run, FEW_STEPS)
    output = tmp_path / "eval"
    with pytest.raises(Interrupted):
        run_eval(EvalRun(FailsAfter(student, 2), suite, output, scorers, batch_size=2))
    written = {p.name: p.stat().st_mtime_ns for p in (output / "images").glob("*.png")}
    assert sorted(written) == ["00000.png", "00001.png", "00002.png", "00003.png"]
    (output / "images" / "00003.png").write_bytes(b"\x89PNG truncated")  # damaged by the interruption

    resumed = FailsAfter(student, 99)
    record = run_eval(EvalRun(resumed, suite, output, scorers, batch_size=2))
    assert resumed.calls == [[3, 4], [5]]
    for name in ["00000.png", "00001.png", "00002.png"]:
        assert (output / "images" / name).stat().st_mtime_ns == written[name]
    assert record["suite"]["count"] == 6
    assert "clip_score" in record["metrics"]


def test_resumed_images_equal_uninterrupted_ones(trained_run, random_scorers, zh, tmp_path):
    suite = load_suite(zh, "demo", limit=3)
    scorers = Scorers.resolve(["clip_score"], None, str(random_scorers["clip"]))
    student = StudentSystem.open(trained_run, FEW_STEPS)
    run_eval(EvalRun(student, suite, tmp_path / "whole", scorers, batch_size=3))
    with pytest.raises(Interrupted):
        run_eval(EvalRun(FailsAfter(student, 1), suite, tmp_path / "parts", scorers, batch_size=1))
    run_eval(EvalRun(student, suite, tmp_path / "parts", scorers, batch_size=2))
    for index in range(3):
        whole = np.asarray(Image.open(tmp_path / "whole" / "images" / f"{index:05d}.png"), dtype=np.int16)
        parts = np.asarray(Image.open(tmp_path / "parts" / "images" / f"{index:05d}.png"), dtype=np.int16)
        # batches of other sizes change float summation order, so pixels may differ by a level or two
        assert np.abs(whole - parts).max() <= 2


def test_changed_protocol_in_same_folder_is_refused(trained_run, random_scorers, tmp_path):
    output = tmp_path / "eval"
    assert runner.invoke(app, eval_args(trained_run, output, random_scorers, "--limit", "2")).exit_code == 0
    before = sorted(p.name for p in output.rglob("*"))
    result = runner.invoke(app, eval_args(trained_run, output, random_scorers, "--limit", "2", "--guidance", "3"))
    assert result.exit_code == 2
    assert "sampling.guidance: 7.5 -> 3.0" in result.output
    assert "new --output" in result.output
    assert sorted(p.name for p in output.rglob("*")) == before


def test_missing_scorer_weights_fail_before_generating(trained_run, tmp_path):
    output = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--lang", "zh", "--model", str(trained_run), "--suite", "demo",
                                 "--output", str(output), "--inception-weights", str(tmp_path / "absent.pth")])
    assert result.exit_code == 2
    assert "absent.pth is not a file" in result.output
    assert not output.exists()


def test_missing_suite_path_on_command_line(trained_run, random_scorers, tmp_path):
    result = runner.invoke(app, ["eval", "--lang", "zh", "--model", str(trained_run), "--suite", "coco-cn",
                                 "--captions", str(tmp_path / "coco-cn.jsonl"), "--output", str(tmp_path / "o"),
                                 "--clip-model", str(random_scorers["clip"]), "--metrics", "clip_score"])
    assert result.exit_code == 2
    assert "captions file of suite 'coco-cn' not found" in result.output


def test_teacher_is_given_the_english_captions(tiny_backbone_dir, random_scorers, zh, tmp_path):
    recipe = load_recipe("demo")
    suite = load_suite(zh, "demo", limit=2)
    teacher = TeacherSystem(recipe, FEW_STEPS)
    scorers = Scorers.resolve(["clip_score"], None, str(random_scorers["clip"]))
    run_eval(EvalRun(teacher, suite, tmp_path / "eval", scorers))
    for item in suite.items:
        with Image.open(tmp_path / "eval" / "images" / f"{item.index:05d}.png") as image:
            assert image.text["prompt"] == item.english
            assert image.text["caption"] == item.caption


def test_teacher_needs_english_captions(zh, tmp_path):
    noise_images(tmp_path / "images", 1, seed=0)
    captions = write_jsonl(tmp_path / "c.jsonl", [{"image_file": "000.png", "zh_human_written": ["一只猫"]}])
    suite = load_suite(zh, "coco-cn", captions=captions, images=tmp_path / "images")
    with pytest.raises(DataError, match="English captions"):
        TeacherSystem(load_recipe("demo"), FEW_STEPS).check_suite(suite.items)


@pytest.fixture(scope="module")
def tiny_mt_model(tmp_path_factory, demo_rows) -> Path:
    """A randomly initialised MarianMT model with a WordPiece vocabulary of the demo captions."""
    from transformers import MarianConfig, MarianMTModel

    from polyiap.tokenizer_build import train_wordpiece

    folder = tmp_path_factory.mktemp("mt")
    tokenizer = train_wordpiece([row["zh"] + " " + row["en"] for row in demo_rows], 3000, 64)
    config = MarianConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                          forced_eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_translate_baseline_end_to_end(tiny_backbone_dir, tiny_mt_model, random_scorers, tmp_path):
    from polyiap.eval.systems import Translator

    output = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--lang", "zh", "--model", "teacher", "--baseline", "translate",
                                 "--mt-model", str(tiny_mt_model), "--recipe", "demo", "--suite", "demo",
                                 "--limit", "3", "--steps", "2", "--output", str(output),
                                 "--inception-weights", str(random_scorers["inception"]),
                                 "--clip-model", str(random_scorers["clip"])])
    assert result.exit_code == 0, result.output
    record = json.loads((output / "metrics.json").read_text())
    assert record["model"]["kind"] == "translate"
    assert record["model"]["mt_model"] == str(tiny_mt_model)
    captions = [item.caption for item in load_suite(load_pack("zh"), "demo", limit=3).items]
    translations = Translator(str(tiny_mt_model))(captions)
    for index, translation in enumerate(translations):
        with Image.open(output / "images" / f"{index:05d}.png") as image:
            assert image.text["prompt"] == translation
    assert "given: " in (output / "report.html").read_text()


def test_pipeline_folder_is_evaluated_as_a_model(tiny_backbone, random_scorers, tmp_path):
    folder = tmp_path / "released"
    tiny_backbone.pipeline("ddim").save_pretrained(folder)
    output = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--lang", "zh", "--model", str(folder), "--recipe", "demo",
                                 "--suite", "demo", "--limit", "2", "--steps", "2", "--output", str(output),
                                 "--clip-model", str(random_scorers["clip"]), "--metrics", "clip_score"])
    assert result.exit_code == 0, result.output
    record = json.loads((output / "metrics.json").read_text())
    assert record["model"]["kind"] == "pipeline"
    assert record["sampling"]["scheduler"] == "pndm"
    assert record["sampling"]["resolution"] == 64


def test_compare_prints_rows_and_protocol_differences(trained_run, random_scorers, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for output, steps in ((first, "2"), (second, "3")):
        args = ["eval", "--lang", "zh", "--model", str(trained_run), "--suite", "demo", "--limit", "2",
                "--steps", steps, "--output", str(output), "--clip-model", str(random_scorers["clip"]),
                "--metrics", "clip_score"]
        assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["eval", "compare", str(first), str(second)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "pndm 2 / 7.5" in result.output
    assert "pndm 3 / 7.5" in result.output
    assert "sampling.steps differs: 2, 3" in result.output


def test_compare_rejects_folder_without_metrics(tmp_path):
    result = runner.invoke(app, ["eval", "compare", str(tmp_path)])
    assert result.exit_code == 2
    assert "has no metrics.json" in result.output


@pytest.mark.slow
def test_eval_killed_half_way_keeps_written_images(trained_run, random_scorers, tmp_path):
    import os
    import signal
    import sys
    import time

    output = tmp_path / "eval"
    command = [sys.executable, "-m", "polyiap", *eval_args(trained_run, output, random_scorers, "--limit", "24",
                                                           "--batch-size", "2", "--metrics", "clip_score")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while len(list((output / "images").glob("*.png"))) < 6:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = {p.name: p.stat().st_mtime_ns for p in (output / "images").glob("*.png")}
    assert 6 <= len(written) < 24, "the eval finished before it was killed"

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for name, mtime in written.items():
        assert (output / "images" / name).stat().st_mtime_ns == mtime
    assert len(list((output / "images").glob("*.png"))) == 24
    assert json.loads((output / "metrics.json").read_text())["suite"]["count"] == 24


def test_invalid_scorers_are_all_reported_before_generating(trained_run, tmp_path):
    garbage = tmp_path / "weights.pth"
    garbage.write_text("not a state dict")
    output = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--lang", "zh", "--model", str(trained_run), "--suite", "demo",
                                 "--output", str(output), "--inception-weights", str(garbage),
                                 "--clip-model", str(tmp_path / "no-clip")])
    assert result.exit_code == 2
    assert "is not torch-fidelity Inception weights" in result.output
    assert "CLIP scorer folder" in result.output
    assert "no-clip" in result.output
    assert not output.exists()


def test_hub_scorer_offline_names_the_option(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PolyiapError, match="pass `--clip-model DIR`"):
        ClipScorer("OFA-Sys/chinese-clip-vit-large-patch14")


def test_error_text_keeps_square_brackets():
    import typer

    from polyiap.cli.errors import handle_errors

    probe = typer.Typer()

    @probe.command()
    @handle_errors
    def fail() -> None:
        raise PolyiapError("install the extra: pip install 'polyiap[eval]'")

    result = runner.invoke(probe, [])
    assert result.exit_code == 2
    assert "'polyiap[eval]'" in result.output


def test_translate_baseline_rejects_a_model(trained_run, tmp_path):
    result = runner.invoke(app, ["eval", "--lang", "zh", "--model", str(trained_run), "--baseline", "translate",
                                 "--mt-model", "x", "--output", str(tmp_path / "o")], env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert "leave --model out" in result.output


def test_resolution_must_be_a_multiple_of_eight(trained_run, random_scorers, tmp_path):
    output = tmp_path / "eval"
    result = runner.invoke(app, eval_args(trained_run, output, random_scorers, "--limit", "2", "--resolution", "30"))
    assert result.exit_code == 2
    assert "--resolution 30 is not a multiple of 8, which the VAE needs; use 24 or 32" in result.output
    fixed = runner.invoke(app, eval_args(trained_run, output, random_scorers, "--limit", "2", "--resolution", "32"))
    assert fixed.exit_code == 0, fixed.output


def test_protocol_without_images_can_be_replaced(trained_run, random_scorers, zh, tmp_path):
    suite = load_suite(zh, "demo", limit=2)
    scorers = Scorers.resolve(["clip_score"], None, str(random_scorers["clip"]))
    output = tmp_path / "eval"
    with pytest.raises(Interrupted):
        run_eval(EvalRun(FailsAfter(StudentSystem.open(trained_run, FEW_STEPS), 0), suite, output, scorers))
    record = run_eval(EvalRun(StudentSystem.open(trained_run, {"steps": 3}), suite, output, scorers))
    assert record["sampling"]["steps"] == 3


def test_compare_lists_scorer_differences(trained_run, random_scorers, tmp_path):
    first = tmp_path / "first"
    args = ["eval", "--lang", "zh", "--model", str(trained_run), "--suite", "demo", "--limit", "2", "--steps", "2",
            "--output", str(first), "--clip-model", str(random_scorers["clip"]), "--metrics", "clip_score"]
    assert runner.invoke(app, args).exit_code == 0
    second = tmp_path / "second"
    second.mkdir()
    record = json.loads((first / "metrics.json").read_text())
    record["scorers"]["clip"]["sha256"] = "f" * 64
    (second / "metrics.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["eval", "compare", str(first), str(second)], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert "scorers.clip.sha256 differs" in result.output


def test_truncation_warned_once_per_evaluation(trained_run, random_scorers, zh, tmp_path, caplog):
    import logging

    suite = load_suite(zh, "demo")
    student = StudentSystem.open(trained_run, FEW_STEPS)
    lengths = [len(ids) for ids in student.student.tokenizer([i.caption for i in suite.items])["input_ids"]]
    long_items = [item for item, length in zip(suite.items, lengths) if length > student.student.max_length]
    assert len(long_items) >= 2, "the demo suite needs captions longer than the student's length"
    scorers = Scorers.resolve(["clip_score"], None, str(random_scorers["clip"]))
    suite.items = long_items[:2]
    with caplog.at_level(logging.WARNING, logger="polyiap"):
        run_eval(EvalRun(student, suite, tmp_path / "eval", scorers, batch_size=1))
    warnings = [r for r in caplog.records if "exceed the student's" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 prompt(s)" in warnings[0].getMessage()


def test_multilingual_clip_scorer_rejected(tmp_path):
    from polyiap.errors import PolyiapError
    from polyiap.eval.clip_score import ClipScorer

    (tmp_path / "config.json").write_text('{"model_type": "xlm-roberta"}')
    with pytest.raises(PolyiapError, match="Chinese CLIP models .* only"):
        ClipScorer(str(tmp_path))
