"""The miniature world: renderer, captions, judge, metrics, a short transfer and the quick reproduce run."""

import json
import re

import numpy as np
import pytest
import torch

from polyiap.miniworld import JUDGE_FOLDER, TEACHER_FOLDER
from polyiap.miniworld.captions import _GERMAN_NOUNS, _TEMPLATES, _WORDS, LANGUAGES, caption
from polyiap.miniworld.scenes import (ATTRIBUTES, COLOURS, HELD_OUT, Scene, all_scenes, held_out_scenes, render,
                                      sample_scenes, training_scenes)

teacher_required = pytest.mark.skipif(not (TEACHER_FOLDER / "model_index.json").is_file(),
                                      reason="the miniature-world teacher is not in the package")


def foreground(image) -> np.ndarray:
    """Return a mask of the pixels that differ clearly from the uniform grey background."""
    pixels = np.asarray(image).astype(int)
    background = pixels[0, 0]
    return np.abs(pixels - background).sum(-1) > 60


@pytest.mark.parametrize("scene", all_scenes()[::5], ids=lambda s: "-".join(s.as_dict().values()))
def test_render_draws_stated_attributes(scene):
    rng = np.random.default_rng(3)
    image = render(scene, rng)
    mask = foreground(image)
    pixels = np.asarray(image).astype(int)[mask]
    columns = np.nonzero(mask)[1]
    centre_x = columns.mean() / mask.shape[1]
    rgb = {"red": (215, 45, 40), "green": (45, 175, 70), "blue": (50, 85, 225), "yellow": (230, 205, 45)}
    nearest = min(COLOURS, key=lambda name: np.abs(pixels.mean(0) - rgb[name]).sum())
    assert nearest == scene.colour
    assert {"left": centre_x < 0.38, "centre": 0.38 <= centre_x <= 0.62, "right": centre_x > 0.62}[scene.position]
    area = mask.mean()
    assert (area < 0.07) if scene.size == "small" else (area > 0.07)
    rows_used, columns_used = np.nonzero(mask)
    box = (np.ptp(rows_used) + 1) * (np.ptp(columns_used) + 1)
    fill = mask.sum() / box
    expected = {"circle": (0.65, 0.9), "square": (0.9, 1.01), "triangle": (0.35, 0.65)}[scene.shape]
    assert expected[0] <= fill <= expected[1]


def test_held_out_combinations_never_sampled():
    scenes = sample_scenes(3000, np.random.default_rng(0))
    drawn = {(s.shape, s.colour, s.position) for s in scenes}
    assert not drawn & set(HELD_OUT)
    assert len(training_scenes()) + len(held_out_scenes()) == len(all_scenes())
    assert all(s.is_held_out() for s in sample_scenes(50, np.random.default_rng(0), held_out=True))


def words_of(language: str, value: str) -> list[str]:
    if language == "de" and value in _GERMAN_NOUNS:
        return [noun for noun, _ in _GERMAN_NOUNS[value]]
    return _WORDS[language][value]


def read_back(text: str, language: str) -> dict[str, str]:
    """Return the attribute values whose words occur in ``text`` (the longest match wins per attribute)."""
    found = {}
    for name, values in ATTRIBUTES.items():
        hits = [(len(word), value) for value in values for word in words_of(language, value)
                if word.lower() in text.lower()]
        found[name] = max(hits)[1] if hits else None
    return found


@pytest.mark.parametrize("language", LANGUAGES)
def test_captions_name_every_attribute(language):
    rng = np.random.default_rng(1)
    for scene in all_scenes():
        for _ in range(6):
            text = caption(scene, language, rng)
            assert read_back(text, language) == scene.as_dict(), text


@pytest.mark.parametrize("language", LANGUAGES)
def test_captions_use_every_template(language):
    rng = np.random.default_rng(2)
    texts = {caption(Scene("square", "green", "left", "large"), language, rng) for _ in range(400)}
    # Each template has its own fixed words; all must show up among the drawn captions.
    for template in _TEMPLATES[language]:
        fixed = [part for part in re.split(r"\{[a-z_]+\}", template) if part.strip(" ,")]
        assert any(all(part in text for part in fixed) for text in texts), template


def test_captions_word_order_differs():
    rng = np.random.default_rng(4)
    scene = Scene("circle", "red", "right", "small")
    english = {caption(scene, "en", rng) for _ in range(100)}
    chinese = {caption(scene, "zh", rng) for _ in range(100)}
    assert any(text.startswith("右") for text in chinese)  # the position first, unlike most English templates
    assert any(text.startswith("a ") for text in english)


def test_unknown_language_rejected():
    with pytest.raises(ValueError, match="available: en, zh, ja, de"):
        caption(all_scenes()[0], "fr", np.random.default_rng(0))


def test_shipped_judge_reads_fresh_renders():
    from polyiap.miniworld.judge import Judge, judge_accuracy

    scores = judge_accuracy(Judge.load(JUDGE_FOLDER), count=1000, seed=777)
    for name in ATTRIBUTES:
        assert scores[name] >= 0.98, (name, scores)


def test_metrics_on_real_renders():
    from polyiap.miniworld.judge import Judge
    from polyiap.miniworld.metrics import accuracy, agreement, frechet_distance
    from polyiap.miniworld.scenes import render_batch

    judge = Judge.load(JUDGE_FOLDER)
    rng = np.random.default_rng(5)
    scenes = sample_scenes(300, rng)
    images = render_batch(scenes, rng)
    shuffled = images[np.random.default_rng(6).permutation(len(images))]
    assert accuracy(judge, images, scenes)["all"] >= 0.98
    assert agreement(judge, images, images) == 1.0
    assert agreement(judge, images, shuffled) < 0.2
    assert abs(frechet_distance(judge, images, images)) < 1e-2  # eigenvalue round-off of near-singular covariances
    other = render_batch(sample_scenes(300, rng), rng)
    blank = np.full_like(images, 40)
    assert frechet_distance(judge, images, other) < frechet_distance(judge, images, blank)


def test_miniworld_source_renders_once(tmp_path):
    from polyiap.miniworld.data import materialize

    path = materialize("miniworld://train?count=12&seed=3", tmp_path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12
    assert set(LANGUAGES) <= set(rows[0])
    assert (path.parent / rows[0]["image"]).is_file()
    before = path.stat().st_mtime_ns
    assert materialize("miniworld://train?count=12&seed=3", tmp_path) == path
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("source", ["miniworld://test?count=3", "miniworld://train?size=3",
                                    "miniworld://train?count=many"])
def test_miniworld_source_invalid(source, tmp_path):
    from polyiap.errors import DataError
    from polyiap.miniworld.data import materialize

    with pytest.raises(DataError, match="miniworld://"):
        materialize(source, tmp_path)


@teacher_required
def test_short_transfer_beats_untrained(tmp_path):
    from polyiap.miniworld.experiments import Condition
    from polyiap.miniworld.reproduce import Reproduction, ReproduceSettings

    settings = ReproduceSettings(tmp_path, "zh", eval_count=48, held_out_count=0,
                                 overrides=("train.max_steps=150", "train.eval_every=150",
                                            "data.source=miniworld://train?count=1000&seed=0"))
    reproduction = Reproduction(settings)
    trained = reproduction.run_condition(Condition("pivot", "method"), seed=0)
    untrained = reproduction.run_condition(Condition("untrained", "method", kind="untrained"), seed=0)
    assert trained["losses"]["last_train_loss"] < trained["losses"]["first_train_loss"]
    assert trained["metrics"]["agreement"] > untrained["metrics"]["agreement"] + 0.2


@teacher_required
def test_reproduce_quick_runs_every_stage(tmp_path):
    from typer.testing import CliRunner

    from polyiap.cli.app import app
    from polyiap.miniworld.experiments import conditions

    report = tmp_path / "miniworld.md"
    result = CliRunner().invoke(app, ["miniworld", "reproduce", "--quick", "--work", str(tmp_path / "work"),
                                      "--report", str(report)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = report.read_text(encoding="utf-8")
    for condition in conditions((100, 300), recipe_size=300):
        assert f"| {condition.name} |" in text
        if not condition.same_as:
            assert (tmp_path / "work" / "seed-0" / condition.slug / "result.json").is_file()
    assert (tmp_path / "miniworld-grid.png").is_file()
    assert "quick mode" in text
    assert "the goals are not expected\nto be met here" in text
    assert "reused" not in text

    stored = {path: path.stat().st_mtime_ns for path in (tmp_path / "work").glob("seed-0/*/result.json")}
    rerun = CliRunner().invoke(app, ["miniworld", "reproduce", "--quick", "--work", str(tmp_path / "work"),
                                     "--report", str(report)], env={"COLUMNS": "200"})
    assert rerun.exit_code == 0, rerun.output
    assert {path: path.stat().st_mtime_ns for path in stored} == stored
    assert f"reused {len(stored)} results" in report.read_text(encoding="utf-8")


def test_results_table_means_losses_over_seeds():
    from polyiap.miniworld.report import results_table

    def run(seed: int, first: float, last: float) -> dict:
        return {"seed": seed, "group": "method", "metrics": {},
                "losses": {"first_train_loss": first, "last_train_loss": last}}

    table = results_table({"pivot": [run(0, 2.0, 0.1), run(1, 3.0, 0.3)],
                           "teacher": [{"seed": 0, "group": "method", "metrics": {}, "losses": {}}]})
    rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
    assert rows["pivot"].endswith("| 2.5 → 0.2 |")
    assert rows["teacher"].endswith("| – |")


def test_compute_seconds_counts_shared_results_once():
    from polyiap.miniworld.report import compute_seconds

    shared = {"seed": 0, "images": "seed-0/pivot/images.npy", "seconds": 60.0}
    results = {"pivot": [shared, {**shared, "seed": 1, "images": "seed-1/pivot/images.npy", "seconds": 30.0}],
               "pivot, two-pass queries": [shared],
               "teacher": [{"seed": 0, "images": "seed-0/teacher/images.npy", "seconds": 6.0}]}
    assert compute_seconds(results) == 96.0


@teacher_required
def test_eval_judge_metric_on_teacher(tmp_path):
    from typer.testing import CliRunner

    from polyiap.cli.app import app

    output = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", "--lang", "zh", "--model", "teacher", "--recipe", "miniworld",
                                      "--suite", "miniworld", "--limit", "12", "--metrics", "judge",
                                      "--output", str(output)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    metrics = json.loads((output / "metrics.json").read_text())["metrics"]
    for name in ("judge_all", "judge_shape", "judge_colour", "judge_position", "judge_size"):
        assert 0.0 <= metrics[name] <= 1.0
    assert len(list((output / "images").glob("*.png"))) == 12


def test_eval_judge_missing_rejected(tmp_path):
    from polyiap.errors import PolyiapError
    from polyiap.eval.judge import find_judge

    with pytest.raises(PolyiapError, match="train-judge"):
        find_judge(tmp_path)


def test_teacher_noise_schedules_leave_the_stated_signal():
    from diffusers import DDPMScheduler

    from polyiap.miniworld.teacher import TeacherConfig, build_teacher_pipeline

    def last_signal(schedule: str) -> float:
        pipeline = build_teacher_pipeline(TeacherConfig(noise_schedule=schedule))
        return DDPMScheduler.from_config(pipeline.scheduler.config).alphas_cumprod[-1].sqrt().item()

    assert last_signal("scaled_linear") == pytest.approx(0.068, abs=0.002)
    assert last_signal("linear") == pytest.approx(0.0064, abs=0.0005)
    with pytest.raises(ValueError, match="'cosine' is not known.*scaled_linear, linear"):
        build_teacher_pipeline(TeacherConfig(noise_schedule="cosine"))


def test_train_teacher_saves_loadable_folder(tmp_path):
    from polyiap.backbones import load_backbone
    from polyiap.miniworld.teacher import TeacherConfig, train_teacher

    config = TeacherConfig(vae_steps=2, unet_steps=3, pool_size=40, vae_batch_size=8, unet_batch_size=4,
                           checkpoint_every=2)
    summary = train_teacher(tmp_path / "teacher", tmp_path / "work", config, command="test")
    assert summary["unet_steps"] == 3
    assert (tmp_path / "work" / "checkpoint.pt").is_file()
    backbone = load_backbone("miniworld", str(tmp_path / "teacher"))
    assert backbone.resolution == 32
    assert backbone.context_dim == 128

    config.unet_steps = 5  # a rerun with the same work folder resumes at step 3
    assert train_teacher(tmp_path / "teacher", tmp_path / "work", config)["unet_steps"] == 5


def test_reproduce_rejects_language_without_captions(tmp_path):
    from polyiap.errors import DataError
    from polyiap.miniworld.reproduce import Reproduction, ReproduceSettings

    with pytest.raises(DataError, match="zh, ja, de only"):
        Reproduction(ReproduceSettings(tmp_path, "fr", quick=True))
