"""``polyiap transfer``: train a student text encoder for a language."""

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polyiap.cli.errors import handle_errors

console = Console(stderr=True)


class RichProgress:
    """Renders training progress: a bar with the latest losses and throughput."""

    def __init__(self):
        self.progress = Progress(TextColumn("[bold]training"), BarColumn(bar_width=20), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[metrics]}"), console=console)
        self.task = None
        self.metrics: dict[str, str] = {}

    def on_start(self, total_steps: int, start_step: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, metrics="")

    def on_step(self, step: int, metrics: dict) -> None:
        names = {"train_loss": "loss", "heldout_pivot_loss": "held-out", "samples_per_s": "samples/s"}
        for key, label in names.items():
            if key in metrics:
                self.metrics[label] = f"{metrics[key]:.4g}"
        text = "  ".join(f"{k} {v}" for k, v in self.metrics.items())
        self.progress.update(self.task, completed=step, metrics=text)
        if "heldout_pivot_loss" in metrics:
            self.progress.console.print(f"step {step}: held-out pivot loss {metrics['heldout_pivot_loss']:.4g} "
                                      f"(mean-embedding baseline {metrics['heldout_mean_embedding_loss']:.4g})")

    def on_message(self, message: str) -> None:
        self.progress.console.print(message)

    def on_end(self) -> None:
        self.progress.stop()


@handle_errors
def transfer_command(
    lang: str = typer.Option(..., "--lang", help="target language code (a pack in languages/) or a pack YAML path"),
    recipe: str = typer.Option(None, "--recipe", help="recipe name or YAML path; default: the pack's reference recipe"),
    output: Path = typer.Option(..., "--output", "-o", help="run folder to create (or to continue with --resume)"),
    data: str = typer.Option(None, "--data", help="triplet file (JSONL/CSV) or shard folder of `polyiap prepare`, replacing the recipe's data.source"),
    overrides: list[str] = typer.Option([], "--set", help="override a recipe value, e.g. --set train.lr=1e-4"),
    resume: str = typer.Option(None, "--resume", help="`latest` or a checkpoint folder to continue from"),
) -> None:
    """Train a student text encoder for LANG with the images-as-pivots objective."""
    from polyiap.packs import load_pack
    from polyiap.recipes import load_recipe
    from polyiap.train import transfer

    pack = load_pack(lang)
    loaded = load_recipe(recipe or pack.reference_recipe, overrides, data)
    main_process = os.environ.get("RANK", "0") == "0"
    if main_process:
        console.print(f"language {pack.code} ({pack.name}), recipe {loaded.name}, output {output}")
    student = transfer(loaded, pack, output, resume, RichProgress(), command=sys.argv)
    if main_process:
        console.print(f"[green]done[/]: student in {student}; metrics in {output / 'metrics.jsonl'}")
