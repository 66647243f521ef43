"""``polyiap eval``: FID and CLIP score of a model on a language pack's evaluation suite."""

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from polyiap.cli.errors import handle_errors

console = Console(stderr=True)
app = typer.Typer(help="Measure a model on an evaluation suite (FID, CLIP score), and compare evaluations.",
                  invoke_without_command=True, no_args_is_help=False)


@app.callback()
@handle_errors
def eval_command(
    ctx: typer.Context,
    lang: str = typer.Option(None, "--lang", help="language pack code, such as zh"),
    model: str = typer.Option(None, "--model", help="run or student folder, a diffusers pipeline folder, or `teacher`; "
                                                    "leave it out with --baseline"),
    suite: str = typer.Option("demo", "--suite", help="evaluation suite declared in the pack"),
    output: Path = typer.Option(None, "--output", "-o", help="folder for images, metrics.json and report.html"),
    captions: Path = typer.Option(None, "--captions", help="caption file of the suite (overrides the pack)"),
    images: Path = typer.Option(None, "--images", help="folder of the suite's reference images (overrides the pack)"),
    limit: int = typer.Option(None, "--limit", min=2, help="use the first N captions only (at least 2, as FID "
                                                          "needs two images)"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="captions per generation batch"),
    seed: int = typer.Option(0, "--seed", help="caption i is generated with seed + i"),
    steps: int = typer.Option(None, "--steps", min=1, help="sampling steps; default: the run's recipe"),
    guidance: float = typer.Option(None, "--guidance", min=0.0, help="guidance scale; default: the run's recipe"),
    scheduler: str = typer.Option(None, "--scheduler", help="pndm, ddim, euler or dpm++; default: the run's recipe"),
    resolution: int = typer.Option(None, "--resolution", min=8, help="image size, a multiple of 8; default: the "
                                                                    "backbone's"),
    recipe: str = typer.Option(None, "--recipe", help="recipe whose backbone and sampler the teacher, translate and "
                                                      "pipeline models use; default: the pack's reference recipe"),
    backbone: str = typer.Option(None, "--backbone", help="local folder of the recipe's backbone (teacher, translate)"),
    baseline: str = typer.Option(None, "--baseline", help="`translate`: machine-translate captions to English first"),
    mt_model: str = typer.Option(None, "--mt-model", help="translation model (target language to English)"),
    inception_weights: Path = typer.Option(None, "--inception-weights", help="torch-fidelity Inception weights file"),
    clip_model: str = typer.Option(None, "--clip-model", help="Chinese CLIP folder; default: the pack's clip_model"),
    metrics: str = typer.Option("fid,clip_score", "--metrics",
                                help="comma-separated: fid, clip_score, judge (miniature-world suites)"),
    judge: Path = typer.Option(None, "--judge", help="miniature-world judge folder; default: the shipped judge"),
) -> None:
    """Generate one image per caption of a suite with fixed seeds and measure FID and CLIP score."""
    if ctx.invoked_subcommand is not None:
        return
    if baseline is not None:
        if model not in (None, "teacher"):
            raise typer.BadParameter(f"--baseline {baseline} evaluates the recipe's backbone, so --model {model} "
                                     "would be ignored; leave --model out")
        model = "teacher"
    missing = [name for name, value in (("--lang", lang), ("--model", model), ("--output", output)) if value is None]
    if missing:
        raise typer.BadParameter(f"missing {', '.join(missing)} (see `polyiap eval --help`)")
    from polyiap.eval.runner import EvalRun, Scorers, run_eval
    from polyiap.eval.suites import load_suite
    from polyiap.eval.systems import open_system
    from polyiap.hub import resolve_model_source
    from polyiap.packs import load_pack
    from polyiap.recipes import load_recipe

    pack = load_pack(lang)
    loaded_suite = load_suite(pack, suite, captions, images, limit)
    scorers = Scorers.resolve([m.strip() for m in metrics.split(",") if m.strip()], inception_weights,
                              clip_model or pack.clip_model, judge)
    the_recipe = load_recipe(recipe or pack.reference_recipe,
                             [f"backbone.source={backbone}"] if backbone else [])
    if model == "teacher" and the_recipe.backbone.source:
        resolve_model_source(the_recipe.backbone.source, "backbone", "--backbone", the_recipe.backbone.revision)
    overrides = {k: v for k, v in {"steps": steps, "guidance": guidance, "scheduler": scheduler}.items() if v is not None}
    system = open_system(model, baseline, the_recipe, overrides, mt_model, resolution)
    with _progress() as progress:
        task = progress.add_task("generating", total=len(loaded_suite.items))
        run = EvalRun(system, loaded_suite, output, scorers, seed, batch_size,
                      on_progress=lambda done, total: progress.update(task, completed=done))
        record = run_eval(run)
    _print_result(record, output)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]generating"), BarColumn(bar_width=20), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def _print_result(record: dict, output: Path) -> None:
    values = ", ".join(f"{name} {value:.3f}" for name, value in record["metrics"].items())
    console.print(f"[green]{values}[/] over {record['suite']['count']} captions; wrote {output / 'metrics.json'} "
                  f"and {output / 'report.html'}")
    for reason in record["not_comparable_because"]:
        console.print(f"[yellow]not comparable to published numbers:[/] {reason}")


@app.command("compare")
@handle_errors
def compare_command(folders: list[Path] = typer.Argument(..., help="output folders of `polyiap eval`")) -> None:
    """Print a Table-1-style comparison of several evaluations."""
    from polyiap.eval.compare import load_rows, protocol_differences

    rows = load_rows(folders)
    table = Table("evaluation", "model", "suite", "captions", "FID", "CLIP score", "sampler", "comparable")
    for row in rows:
        sampler = f"{row.sampling['scheduler']} {row.sampling['steps']} / {row.sampling['guidance']}"
        table.add_row(row.folder.name, row.model, row.suite, str(row.count), _number(row.fid),
                      _number(row.clip_score), sampler, "yes" if row.comparable else "no")
    terminal = Console()
    Console(width=None if terminal.is_terminal else 200).print(table)
    for line in protocol_differences(rows):
        console.print(f"[yellow]protocols differ:[/] {line}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@app.command("random-scorers")
@handle_errors
def random_scorers_command(
    lang: str = typer.Option(..., "--lang", help="language pack whose demo suite captions build the CLIP vocabulary"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for inception-random.pth and chinese-clip-random/"),
) -> None:
    """Write randomly initialised scorers so that `polyiap eval` runs offline (not comparable to published numbers)."""
    from polyiap.eval.clip_score import write_random_chinese_clip
    from polyiap.eval.fid import write_random_inception
    from polyiap.eval.suites import load_suite
    from polyiap.packs import load_pack

    captions = [item.caption for item in load_suite(load_pack(lang), "demo").items]
    inception = write_random_inception(output / "inception-random.pth")
    clip = write_random_chinese_clip(output / "chinese-clip-random", captions)
    console.print(f"wrote {inception} and {clip}; scores computed with them are marked as not comparable")
