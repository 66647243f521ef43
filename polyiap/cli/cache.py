"""``polyiap cache``: precompute what training would otherwise compute at every step."""

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from polyiap.cli.errors import handle_errors

console = Console(stderr=True)
app = typer.Typer(help="Precompute caches that training reads (VAE latents).", no_args_is_help=True)

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

    from polyiap.backbones import load_backbone
    from polyiap.errors import PolyiapError
    from polyiap.packs import load_pack
    from polyiap.recipes import load_recipe
    from polyiap.train.latents_cache import build_latents_cache, image_keys
    from polyiap.train.setup import read_recipe_triplets

    if dtype not in DTYPES:
        raise PolyiapError(f"--dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    pack = load_pack(lang)
    loaded = load_recipe(recipe or pack.reference_recipe, overrides, data)
    triplets = read_recipe_triplets(loaded, pack)
    data_root = Path(loaded.data.source).parent
    images = image_keys(triplets, data_root)
    config = loaded.backbone
    backbone = load_backbone(config.family, config.source, config.revision)
    if torch.cuda.is_available():
        backbone.to("cuda")
    resolution = loaded.data.resolution or backbone.resolution
    with Progress(TextColumn("[bold]encoding"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("encode", total=len(images))
        cache = build_latents_cache(backbone, images, data_root, resolution, output, shard_size, batch_size,
                                    getattr(torch, dtype),
                                    on_progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"[green]cached[/] {len(cache.images)} images in {cache.shard_count} shard(s) at {output}; "
                  f"train with --set data.latents_cache={output}")
