"""`polyiap transfer` end to end on the tiny backbone: run folder, resume, offline behaviour, baselines."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from polyiap.cli.app import app

runner = CliRunner()

FAST = ["--set", "train.log_every=2", "--set", "train.eval_every=4", "--set", "data.heldout_images=4",
        "--set", "samples.num_prompts=2", "--set", "samples.steps=2"]


def transfer(*args: str):
    result = runner.invoke(app, ["transfer", *args])
    return result


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def student_digest(student: Path) -> dict[str, str]:
    files = sorted(p for p in student.rglob("*.safetensors"))
    return {str(p.relative_to(student)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_demo_writes_run_folder(tmp_path):
    run = tmp_path / "demo"
    result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=6", *FAST)
    assert result.exit_code == 0, result.output
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "checkpoints", "student"):
        assert (run / name).exists(), name
    assert (run / "student" / "text_encoder" / "model.safetensors").is_file()
    assert (run / "student" / "tokenizer" / "tokenizer.json").is_file()
    assert list((run / "samples").glob("*.png"))
    records = read_metrics(run)
    assert records[0]["step"] == 0
    assert "heldout_pivot_loss" in records[0]
    assert "heldout_mean_embedding_loss" in records[0]
    assert records[-1]["step"] == 6
    assert "train_loss" in records[-1]


def test_existing_run_folder_is_not_overwritten(tmp_path):
    run = tmp_path / "demo"
    first = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=2", *FAST)
    assert first.exit_code == 0, first.output
    before = student_digest(run / "student")
    second = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=2", *FAST)
    assert second.exit_code == 2
    assert "--resume latest" in second.output
    assert student_digest(run / "student") == before


def test_resume_latest_without_checkpoint(tmp_path):
    result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(tmp_path / "none"), "--resume", "latest")
    assert result.exit_code == 2
    assert "no complete checkpoint" in result.output


def test_checkpoints_total_limit(tmp_path):
    run = tmp_path / "demo"
    result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=6",
                      "--set", "train.checkpoint_every=1", "--set", "train.checkpoints_total_limit=2", *FAST)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-0000005", "step-0000006"]


def test_plain_denoise_loss_trains_through_loop(tmp_path):
    run = tmp_path / "denoise"
    result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "loss.name=denoise",
                      "--set", "train.max_steps=4", *FAST)
    assert result.exit_code == 0, result.output
    records = read_metrics(run)
    assert records[-1]["train_loss"] > 0
    assert "heldout_pivot_loss" in records[-1]


def test_unknown_loss_suggests_name(tmp_path):
    result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(tmp_path / "r"), "--set", "loss.name=pivto")
    assert result.exit_code == 2
    assert "Did you mean 'pivot'" in result.output


def test_training_step_changes_only_student(tiny_backbone, demo_rows):
    from polyiap.backbones import TextConditioning
    from polyiap.encoders import build_student
    from polyiap.pivot import LossInputs, PivotContext, PivotLoss, pivot_processors
    from polyiap.recipes.schema import StudentConfig

    student = build_student(StudentConfig(), 16, tiny_backbone.context_dim, [r["zh"] for r in demo_rows], seed=0)
    frozen = {f"{m}.{n}": p.detach().clone() for m, module in tiny_backbone.frozen_modules().items()
              for n, p in module.state_dict().items()}
    student_before = {n: p.detach().clone() for n, p in student.state_dict().items()}
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)

    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 16, 16, generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.tensor([10, 900])
    noisy = tiny_backbone.noise_scheduler().add_noise(latents, noise, timesteps)
    inputs = LossInputs(latents, noise, timesteps, noisy, tiny_backbone.encode_teacher(["a bear", "a boat"]),
                        TextConditioning(student(**student.tokenize(["一只熊", "一艘船"]))))
    context = PivotContext()
    with pivot_processors(tiny_backbone.cross_attention_layers(), context):
        PivotLoss(tiny_backbone, context)(inputs).backward()
    for module in tiny_backbone.frozen_modules().values():
        assert all(p.grad is None for p in module.parameters())
    assert student.projection is None
    assert student.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    optimizer.step()

    for m, module in tiny_backbone.frozen_modules().items():
        for n, p in module.state_dict().items():
            assert torch.equal(p, frozen[f"{m}.{n}"]), f"{m}.{n} changed"
    changed = [n for n, p in student.state_dict().items() if not torch.equal(p, student_before[n])]
    assert "encoder.embeddings.word_embeddings.weight" in changed


def backbone_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_reference_recipe_offline_fails_fast(tmp_path):
    started = time.monotonic()
    result = transfer("--lang", "zh", "--output", str(tmp_path / "run"))
    assert time.monotonic() - started < 30  # a generous bound; a download or retry loop takes minutes
    assert result.exit_code == 2
    assert "CompVis/stable-diffusion-v1-4" in result.output
    assert "IDEA-CCNL/Taiyi-CLIP-RoBERTa-102M-ViT-L-Chinese" in result.output
    assert "--set backbone.source=DIR" in result.output
    assert not (tmp_path / "run").exists()


def test_unreachable_hub_fails_without_offline_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    from polyiap.errors import ModelNotAvailableError
    from polyiap.hub import resolve_model_source

    with pytest.raises(ModelNotAvailableError, match="cannot be reached"):
        resolve_model_source("CompVis/stable-diffusion-v1-4", "backbone", "backbone.source")


def test_reference_recipe_trains_on_local_folders(tmp_path, tiny_backbone_dir, bert_student_dir, small_triplets):
    before = backbone_digest(tiny_backbone_dir)
    run = tmp_path / "paper"
    result = transfer(
        "--lang", "zh", "--output", str(run), "--data", str(small_triplets),
        "--set", f"backbone.source={tiny_backbone_dir}", "--set", f"student.init={bert_student_dir}",
        "--set", "train.max_steps=2", "--set", "train.batch_size=4", "--set", "train.num_workers=0",
        "--set", "data.resolution=64", "--set", "data.heldout_images=2", "--set", "train.eval_every=1")
    assert result.exit_code == 0, result.output
    config = (run / "config.yaml").read_text()
    assert "zh-paper" in config
    assert (run / "student" / "projection.safetensors").is_file()  # BERT width 48 -> context width 64
    assert [r["step"] for r in read_metrics(run) if "heldout_pivot_loss" in r] == [0, 1, 2]
    assert backbone_digest(tiny_backbone_dir) == before


def launch(run: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "polyiap", "transfer", "--lang", "zh", "--recipe", "demo", "--output", str(run),
               "--set", "train.max_steps=40", "--set", "train.checkpoint_every=5", "--set", "samples.num_prompts=0",
               *FAST, *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    assert launch(reference).wait(timeout=600) == 0
    killed = tmp_path / "killed"
    process = launch(killed)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "step-0000010" / "trainer_state.json").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "student").exists(), "the run finished before it was killed"

    resumed = launch(killed, "--resume", "latest")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()
    assert student_digest(killed / "student") == student_digest(reference / "student")
    assert [r["step"] for r in read_metrics(killed)] == [r["step"] for r in read_metrics(reference)]


@pytest.mark.slow
def test_demo_recipe_acceptance(tmp_path):
    run = tmp_path / "demo"
    result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run))
    assert result.exit_code == 0, result.output
    heldout = [r for r in read_metrics(run) if "heldout_pivot_loss" in r]
    assert heldout[0]["step"] == 0
    assert heldout[-1]["heldout_pivot_loss"] <= 0.5 * heldout[0]["heldout_pivot_loss"]
    # Below the mean-embedding baseline, the student carries caption-specific information to unseen photos.
    assert heldout[-1]["heldout_pivot_loss"] < heldout[-1]["heldout_mean_embedding_loss"]


def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    run = tmp_path / "accumulate"
    result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=4",
                      "--set", "train.gradient_accumulation_steps=2", "--set", "train.warmup_steps=4", *FAST)
    assert result.exit_code == 0, result.output
    state = json.loads((run / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())
    assert state["step"] == 4
    assert state["micro_batches"] == 8
    lrs = {r["step"]: r["lr"] for r in read_metrics(run) if "lr" in r}
    assert lrs[2] == pytest.approx(3e-4 * 2 / 4)


def test_batch_not_divisible_by_accumulation(tmp_path):
    result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(tmp_path / "r"),
                      "--set", "train.batch_size=10", "--set", "train.gradient_accumulation_steps=4")
    assert result.exit_code == 2
    assert "train.batch_size" in result.output
    assert "multiple of 4" in result.output


@pytest.mark.slow
def test_two_processes_share_the_batch(tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "polyiap", "transfer",
               "--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=4",
               "--set", "train.warmup_steps=4", "--set", "train.checkpoint_every=4", *FAST]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    checkpoint = run / "checkpoints" / "step-0000004"
    assert (checkpoint / "rng-0.pt").is_file()
    assert (checkpoint / "rng-1.pt").is_file()
    lrs = {r["step"]: r["lr"] for r in read_metrics(run) if "lr" in r}
    assert lrs[2] == pytest.approx(3e-4 * 2 / 4)  # the schedule counts global steps, not steps per process
    assert finished.stdout.count("done:") + finished.stderr.count("done:") == 1


def test_resume_rejects_changed_recipe(tmp_path):
    run = tmp_path / "demo"
    first = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=2", *FAST)
    assert first.exit_code == 0, first.output
    changed = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=4",
                       "--set", "train.lr=1e-2", "--resume", "latest", *FAST)
    assert changed.exit_code == 2
    assert "only train.max_steps may change" in changed.output
    longer = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=4",
                      "--resume", "latest", *FAST)
    assert longer.exit_code == 0, longer.output
    assert read_metrics(run)[-1]["step"] == 4


def test_heldout_max_samples_limits_evaluation(tmp_path, caplog):
    from polyiap.packs import load_pack
    from polyiap.recipes import load_recipe
    from polyiap.train.setup import load_inputs

    recipe = load_recipe("demo", ["data.heldout_max_samples=7"])
    inputs = load_inputs(recipe, load_pack("zh"))
    assert len(inputs.heldout) == 60
    run = tmp_path / "limited"
    with caplog.at_level("INFO", logger="polyiap"):
        result = transfer("--lang", "zh", "--recipe", "demo", "--output", str(run), "--set", "train.max_steps=1",
                          "--set", "data.heldout_max_samples=7", "--set", "samples.num_prompts=0")
    assert result.exit_code == 0, result.output
    assert "held-out evaluation on 7 of 60 held-out triplets" in caplog.text
    assert "heldout_pivot_loss" in read_metrics(run)[0]
