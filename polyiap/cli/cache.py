"""``polyiap cache``: precompute what training would otherwise compute at every step."""

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polyiap.cli.errors import handle_errors

console = Console(stderr=True)
app = typer.Typer(help="Precompute caches that training reads (VAE latents, teacher embeddings).",
                  no_args_is_help=True)

DTYPES = ("float32", "float16", "bfloat16")


@app.command("latents")
@handle_errors
def latents_command(
    lang: str = typer.Option(..., "--lang", help="language pack code (its target column names the captions)"),
    output: Path = typer.Option(..., "--output", "-o", help="cache folder; set data.latents_cache to it to train"),
    recipe: str = typer.Option(None, "--recipe", help="recipe name or YAML path; default: the pack's reference recipe"),
    data: str = typer.Option(None, "--data", help="triplet file replacing the recipe's data.source"),
    overrides: list[str] = typer.Option([], "--set", help="override a recipe value, e.g. --set data.resolution=256"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="images per VAE batch"),
    shard_size: int = typer.Option(1024, "--shard-size", min=1, help="images per shard file"),
    dtype: str = typer.Option("float32", "--dtype", help="storage type: float32 (exact) or float16 / bfloat16 "
                                                         "(half the disk, rounds the posterior)"),
) -> None:
    """Encode the recipe's training images with the backbone's VAE once (resumable)."""
    import torch

    from polyiap.train.latents_cache import build_latents_cache, image_keys

    loaded, triplets, backbone = _recipe_data_backbone(lang, recipe, data, overrides, dtype)
    data_root = Path(loaded.data.source).parent
    images = image_keys(triplets, data_root)
    resolution = loaded.data.resolution or backbone.resolution
    with _progress("encoding") as progress:
        task = progress.add_task("encode", total=len(images))
        cache = build_latents_cache(backbone, images, data_root, resolution, output, shard_size, batch_size,
                                    getattr(torch, dtype),
                                    on_progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"[green]cached[/] {len(cache.names)} images in {cache.shard_count} shard(s) at {output}; "
                  f"train with --set data.latents_cache={output}")


@app.command("teacher")
@handle_errors
def teacher_command(
    lang: str = typer.Option(..., "--lang", help="language pack code (its target column names the captions)"),
    output: Path = typer.Option(..., "--output", "-o", help="cache folder; set data.teacher_cache to it to train"),
    recipe: str = typer.Option(None, "--recipe", help="recipe name or YAML path; default: the pack's reference recipe"),
    data: str = typer.Option(None, "--data", help="triplet file replacing the recipe's data.source"),
    overrides: list[str] = typer.Option([], "--set", help="override a recipe value"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="captions per text encoder batch"),
    shard_size: int = typer.Option(4096, "--shard-size", min=1, help="captions per shard file"),
    dtype: str = typer.Option("float32", "--dtype", help="storage type: float32 (exact) or float16 / bfloat16"),
) -> None:
    """Encode the recipe's English captions (and the empty caption) with the teacher once (resumable)."""
    import torch

    from polyiap.train.teacher_cache import build_teacher_cache, caption_keys

    loaded, triplets, backbone = _recipe_data_backbone(lang, recipe, data, overrides, dtype)
    captions = caption_keys(triplets)
    with _progress("encoding") as progress:
        task = progress.add_task("encode", total=len(captions))
        cache = build_teacher_cache(backbone, captions, output, shard_size, batch_size, getattr(torch, dtype),
                                    on_progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"[green]cached[/] {len(cache.names)} captions in {cache.shard_count} shard(s) at {output}; "
                  f"train with --set data.teacher_cache={output}")


def _recipe_data_backbone(lang: str, recipe: str | None, data: str | None, overrides: list[str], dtype: str):
    """Load the recipe, its triplets and its backbone (on the GPU when there is one)."""
    import torch

    from polyiap.backbones import load_backbone
    from polyiap.errors import PolyiapError
    from polyiap.packs import load_pack
    from polyiap.recipes import load_recipe
    from polyiap.train.setup import read_recipe_triplets

    if dtype not in DTYPES:
        raise PolyiapError(f"--dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    pack = load_pack(lang)
    loaded = load_recipe(recipe or pack.reference_recipe, overrides, data)
    triplets = read_recipe_triplets(loaded, pack)
    config = loaded.backbone
    backbone = load_backbone(config.family, config.source, config.revision)
    if torch.cuda.is_available():
        backbone.to("cuda")
    return loaded, triplets, backbone


def _progress(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)
