"""``polyiap miniworld``: the miniature world's data, teacher, judge and experiments."""

import logging
import sys
from datetime import date
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from polyiap.cli.errors import handle_errors

console = Console(stderr=True)
app = typer.Typer(help="The miniature world: rendered scenes, a tiny trained teacher, a judge and experiments.",
                  no_args_is_help=True)


class NoiseSchedule(str, Enum):
    """Noise schedules the teacher can train with (`polyiap.miniworld.teacher.NOISE_SCHEDULES`)."""

    scaled_linear = "scaled_linear"
    linear = "linear"


@app.command("data")
@handle_errors
def data_command(
    output: Path = typer.Option(..., "--output", "-o", help="folder to write images/ and triplets.jsonl into"),
    count: int = typer.Option(3000, "--count", min=1, help="number of scenes"),
    seed: int = typer.Option(0, "--seed", help="seed of the scenes, the jitter and the captions"),
    held_out: bool = typer.Option(False, "--held-out", help="draw from the held-out attribute combinations"),
) -> None:
    """Render scenes with captions in en, zh, ja and de as a triplet file."""
    from polyiap.miniworld.data import write_dataset

    path = write_dataset(output, count, seed, held_out)
    console.print(f"wrote {count} scenes and {path}")


@app.command("train-judge")
@handle_errors
def train_judge_command(
    output: Path = typer.Option(..., "--output", "-o", help="folder for judge.safetensors and judge.json"),
    steps: int = typer.Option(1500, "--steps", min=1, help="training steps of 128 fresh renders each"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train the attribute judge on fresh renders and report its held-out accuracy."""
    from polyiap.miniworld.judge import judge_accuracy, train_judge

    judge = train_judge(steps, seed=seed)
    scores = judge_accuracy(judge)
    judge.save(output, {"steps": steps, "seed": seed, "heldout_accuracy": scores})
    console.print(f"judge in {output}; accuracy on 2000 fresh renders: {scores}")


@app.command("train-teacher")
@handle_errors
def train_teacher_command(
    output: Path = typer.Option(..., "--output", "-o", help="diffusers folder to write the teacher to"),
    work: Path = typer.Option(..., "--work", help="folder for checkpoints; rerun with the same folder to resume"),
    unet_steps: int = typer.Option(4000, "--unet-steps", min=1, help="UNet and text-encoder training steps"),
    vae_steps: int = typer.Option(600, "--vae-steps", min=1, help="VAE training steps"),
    judge: Path = typer.Option(None, "--judge", help="judge folder: log the judged accuracy every 1000 steps"),
    noise_schedule: NoiseSchedule = typer.Option("scaled_linear", "--noise-schedule",
                                                 help="scaled_linear (Stable Diffusion's, as the shipped teacher) "
                                                      "or linear (nearly no image left at the last timestep)"),
) -> None:
    """Train the teacher from scratch on English captions (about 1-2 hours on a 2-core CPU)."""
    from polyiap.miniworld.judge import Judge
    from polyiap.miniworld.teacher import TeacherConfig, train_teacher

    logging.getLogger("polyiap").setLevel(logging.INFO)
    config = TeacherConfig(vae_steps=vae_steps, unet_steps=unet_steps, noise_schedule=noise_schedule.value)
    command = " ".join(["polyiap", *sys.argv[1:]])
    summary = train_teacher(output, work, config, Judge.load(judge) if judge else None, command)
    console.print(f"teacher in {output} after {summary['seconds'] / 60:.1f} min")


@app.command("reproduce")
@handle_errors
def reproduce_command(
    lang: str = typer.Option("zh", "--lang", help="target language: zh, ja or de"),
    seeds: int = typer.Option(1, "--seeds", min=1, help="training seeds per condition"),
    work: Path = typer.Option(Path("runs/miniworld"), "--work", help="folder for runs and results; reused on rerun"),
    report: Path = typer.Option(None, "--report", help="Markdown report to write; default: docs/miniworld.md, "
                                                      "or WORK/miniworld.md with --quick"),
    quick: bool = typer.Option(False, "--quick", help="a few steps per stage: checks that everything runs"),
    teacher: Path = typer.Option(None, "--teacher", help="teacher folder; default: the shipped teacher"),
) -> None:
    """Train and measure every condition on the teacher and write the report."""
    import time

    from polyiap.miniworld.judge import Judge, judge_accuracy
    from polyiap.miniworld.reproduce import Reproduction, ReproduceSettings, machine
    from polyiap.miniworld.report import write_report

    report = report or (work / "miniworld.md" if quick else Path("docs/miniworld.md"))
    settings = ReproduceSettings(work, lang, seeds, quick, teacher)
    started = time.monotonic()
    reproduction = Reproduction(settings, on_message=console.print)
    results = reproduction.run()
    images = {name: _seed_images(work, runs) for name, runs in results.items()}
    facts = {"command": " ".join(["polyiap", *sys.argv[1:]]), "date": date.today().isoformat(),
             "machine": machine(), "seconds": time.monotonic() - started, "seeds": seeds, "quick": quick,
             "reused": len(reproduction.reused),
             "teacher": str(reproduction.base_recipe.backbone.source or "shipped"), "judge": str(settings.judge),
             "judge_accuracy": judge_accuracy(Judge.load(settings.judge), count=500),
             "language": reproduction.pack.code, "eval_count": settings.eval_sizes()[0],
             "held_out_count": settings.eval_sizes()[1], "steps": reproduction.sampler.steps,
             "guidance": reproduction.sampler.guidance,
             "teacher_training": _teacher_training(reproduction.backbone.source)}
    write_report(report, results, reproduction.eval_set, images, facts)
    console.print(f"report written to {report}")
    failed = [name for name, runs in results.items() if not _loss_fell(runs)]
    if failed:
        console.print(f"[red]training loss did not fall[/] for: {', '.join(failed)}")
        raise typer.Exit(1)


def _teacher_training(folder: Path) -> dict:
    import json

    path = Path(folder) / "teacher_training.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _seed_images(work: Path, runs: list[dict]):
    import numpy as np

    return np.load(work / runs[0]["images"])


def _loss_fell(runs: list[dict]) -> bool:
    for run in runs:
        losses = run.get("losses") or {}
        if losses.get("first_train_loss") is not None and not losses["last_train_loss"] < losses["first_train_loss"]:
            return False
    return True
