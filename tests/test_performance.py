"""Training-speed options: two-pass mode, latents cache, gradient checkpointing, torch.compile."""

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from polyiap.cli.app import app
from polyiap.errors import PolyiapError
from polyiap.train.latents_cache import (COMMAND, build_latents_cache, cache_key, check_latents_cache,
                                         open_latents_cache)

runner = CliRunner()
SHORT = ["--set", "train.max_steps=4", "--set", "train.log_every=1", "--set", "train.eval_every=4",
         "--set", "data.heldout_images=4", "--set", "samples.num_prompts=0"]


def transfer(output: Path, *args: str):
    return runner.invoke(app, ["transfer", "--lang", "zh", "--recipe", "demo", "--output", str(output), *SHORT, *args])


def train_losses(run: Path, name: str = "train_loss") -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r[name] for r in records if name in r]


def copy_cache(source: Path, folder: Path, **key_changes) -> Path:
    """Copy a cache folder and change fields of its recorded key."""
    folder.mkdir()
    for path in source.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    record = json.loads((folder / "cache.json").read_text())
    record["key"].update(key_changes)
    (folder / "cache.json").write_text(json.dumps(record))
    return folder


def heldout_losses(run: Path) -> list[float]:
    return train_losses(run, "heldout_pivot_loss")


def build_demo_cache(folder: Path, kind: str, shard_size: int) -> Path:
    """Build a `polyiap cache` of the demo recipe in ``folder`` and return it."""
    result = runner.invoke(app, ["cache", kind, "--lang", "zh", "--recipe", "demo", "--output", str(folder),
                                 "--shard-size", str(shard_size)])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def latents_cache(tmp_path_factory) -> Path:
    return build_demo_cache(tmp_path_factory.mktemp("latents") / "cache", "latents", 40)


def test_two_pass_mode_trains(tmp_path):
    result = transfer(tmp_path / "run", "--set", "loss.queries=two-pass")
    assert result.exit_code == 0, result.output
    assert len(train_losses(tmp_path / "run")) == 4
    start, end = heldout_losses(tmp_path / "run")
    assert end < start


def test_cached_latents_train_like_pixels(tmp_path, latents_cache):
    assert transfer(tmp_path / "pixels").exit_code == 0
    result = transfer(tmp_path / "cached", "--set", f"data.latents_cache={latents_cache}")
    assert result.exit_code == 0, result.output
    # The same posterior sample is drawn from the same generator; only VAE batch sizes differ.
    assert train_losses(tmp_path / "cached") == pytest.approx(train_losses(tmp_path / "pixels"), rel=1e-4)


def test_cache_covers_every_shipped_photo(latents_cache):
    cache = open_latents_cache(latents_cache)
    assert len(cache.names) == 111
    assert cache.shard_count == 3
    assert cache.missing_shards() == []
    assert cache.key["resolution"] == 64
    assert len(cache.key["vae_sha256"]) == 64


def test_stale_cache_is_rejected(tmp_path, latents_cache):
    result = transfer(tmp_path / "run", "--set", f"data.latents_cache={latents_cache}", "--set", "data.resolution=32")
    assert result.exit_code == 2
    assert "is stale" in result.output
    assert "resolution=64" in result.output
    assert "rebuild it" in result.output
    assert not (tmp_path / "run").exists(), "a rejected cache must not leave a run folder behind"


def test_cache_of_edited_images_is_rejected(tmp_path, demo_rows):
    import shutil

    from polyiap.recipes import load_recipe

    data = tmp_path / "data"
    shutil.copytree(Path(load_recipe("demo").data.source).parent, data)
    cache = tmp_path / "cache"
    result = runner.invoke(app, ["cache", "latents", "--lang", "zh", "--recipe", "demo", "--data",
                                 str(data / "triplets.jsonl"), "--output", str(cache)])
    assert result.exit_code == 0, result.output
    edited = data / demo_rows[0]["image"]
    edited.write_bytes(edited.read_bytes() + b"\0")
    result = transfer(tmp_path / "run", "--data", str(data / "triplets.jsonl"), "--set", f"data.latents_cache={cache}")
    assert result.exit_code == 2
    assert "changed after the cache was built" in result.output


def test_resuming_cache_with_other_dtype_is_refused(tmp_path, latents_cache):
    copy = copy_cache(latents_cache, tmp_path / "cache")
    result = runner.invoke(app, ["cache", "latents", "--lang", "zh", "--recipe", "demo", "--output", str(copy),
                                 "--shard-size", "40", "--dtype", "float16"])
    assert result.exit_code == 2
    assert "another dtype (it was started with --dtype float32)" in result.output


def test_cache_output_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = runner.invoke(app, ["cache", "teacher", "--lang", "zh", "--recipe", "demo", "--output", str(target)])
    assert result.exit_code == 2
    assert "is a file" in result.output


def test_cache_of_another_vae_is_rejected(tmp_path, latents_cache, tiny_backbone):
    copy = copy_cache(latents_cache, tmp_path / "cache", vae_sha256="0" * 64)
    with pytest.raises(PolyiapError, match="stale: it was built with vae_sha256"):
        check_latents_cache(open_latents_cache(copy), tiny_backbone, 64, [], copy)


def test_cache_missing_images_is_rejected(latents_cache, tiny_backbone):
    cache = open_latents_cache(latents_cache)
    with pytest.raises(PolyiapError, match="lacks 1 of this run's entries.*elsewhere.jpg"):
        cache.check(cache_key(tiny_backbone, 64), cache.names + ["elsewhere.jpg"], COMMAND)


def test_interrupted_cache_build_resumes(tmp_path, latents_cache, tiny_backbone):
    from polyiap.recipes import load_recipe

    copy = copy_cache(latents_cache, tmp_path / "cache")
    (copy / "shard-00001.safetensors").unlink()
    (copy / "shard-00002.safetensors").write_bytes(b"truncated")
    first_shard_mtime = (copy / "shard-00000.safetensors").stat().st_mtime_ns
    cache = open_latents_cache(copy)
    assert cache.missing_shards() == [1, 2]

    progress = []
    data_root = Path(load_recipe("demo").data.source).parent
    build_latents_cache(tiny_backbone, cache.names, data_root, 64, copy, shard_size=40,
                        on_progress=lambda done, total: progress.append(done))
    assert progress[0] == 40  # the first shard was kept
    assert (copy / "shard-00000.safetensors").stat().st_mtime_ns == first_shard_mtime
    assert open_latents_cache(copy).missing_shards() == []
    for shard in (1, 2):
        assert (copy / f"shard-{shard:05d}.safetensors").read_bytes() == \
            (latents_cache / f"shard-{shard:05d}.safetensors").read_bytes()


def test_cache_into_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["cache", "latents", "--lang", "zh", "--recipe", "demo", "--output", str(tmp_path)])
    assert result.exit_code == 2
    assert "not empty and contains no cache.json" in result.output
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory) -> Path:
    return build_demo_cache(tmp_path_factory.mktemp("teacher") / "cache", "teacher", 200)


def test_teacher_cache_covers_captions_and_empty(teacher_cache, demo_rows):
    from polyiap.train.teacher_cache import open_teacher_cache

    cache = open_teacher_cache(teacher_cache)
    assert "" in cache.names
    assert set(cache.names) == {row["en"] for row in demo_rows} | {""}
    assert cache.fields == ["sequence"]


def test_cached_teacher_trains_like_encoding(tmp_path, teacher_cache, latents_cache):
    assert transfer(tmp_path / "plain").exit_code == 0
    result = transfer(tmp_path / "cached", "--set", f"data.teacher_cache={teacher_cache}",
                      "--set", f"data.latents_cache={latents_cache}")
    assert result.exit_code == 0, result.output
    assert train_losses(tmp_path / "cached") == pytest.approx(train_losses(tmp_path / "plain"), rel=1e-4)


def test_teacher_cache_used_as_latents_cache_is_rejected(tmp_path, teacher_cache):
    result = transfer(tmp_path / "run", "--set", f"data.latents_cache={teacher_cache}")
    assert result.exit_code == 2
    assert "is a teacher cache, not a latents cache" in result.output


def test_stale_teacher_cache_is_rejected(tmp_path, teacher_cache, tiny_backbone):
    from polyiap.train.teacher_cache import CachedTeacher, open_teacher_cache

    copy = copy_cache(teacher_cache, tmp_path / "cache", max_length=32)
    with pytest.raises(PolyiapError, match="stale: it was built with max_length=32"):
        CachedTeacher(open_teacher_cache(copy), tiny_backbone, [""])


def test_gradient_checkpointing_keeps_gradients(bert_student_dir):
    from transformers import BertModel

    from polyiap.train.setup import enable_gradient_checkpointing

    encoder = BertModel.from_pretrained(bert_student_dir)
    ids = torch.randint(5, 100, (2, 12))
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            enable_gradient_checkpointing(encoder)
            assert getattr(encoder, "is_activation_checkpointing", None) or encoder.is_gradient_checkpointing
        encoder.train()
        encoder.zero_grad()
        torch.manual_seed(0)
        encoder(input_ids=ids).last_hidden_state.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_gradient_checkpointing_option_trains(tmp_path):
    result = transfer(tmp_path / "run", "--set", "student.gradient_checkpointing=true")
    assert result.exit_code == 0, result.output
    start, end = heldout_losses(tmp_path / "run")
    assert end < start


@pytest.mark.slow
def test_compiled_student_trains_like_eager(tmp_path):
    assert transfer(tmp_path / "eager").exit_code == 0
    result = transfer(tmp_path / "compiled", "--set", "train.compile=true")
    assert result.exit_code == 0, result.output
    # Compiled dropout draws its masks from another random stream, so losses agree only roughly.
    assert train_losses(tmp_path / "compiled") == pytest.approx(train_losses(tmp_path / "eager"), rel=2e-2)
    start, end = heldout_losses(tmp_path / "compiled")
    assert end < start
