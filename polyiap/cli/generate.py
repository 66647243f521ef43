"""``polyiap generate``: images from prompts in the new language with a trained student."""

import json
from pathlib import Path

import typer
from rich.console import Console

from polyiap.cli.errors import handle_errors

console = Console(stderr=True)


@handle_errors
def generate_command(
    model: Path = typer.Option(..., "--model", help="run folder of `polyiap transfer` or a student folder"),
    prompts: list[str] = typer.Option(..., "--prompt", help="prompt in the student's language; repeat for several"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for the PNG files and generate.json"),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="negative prompt in the student's language"),
    seed: int = typer.Option(0, "--seed", help="seed of the first image; image j of each prompt uses seed + j"),
    steps: int = typer.Option(None, "--steps", min=1, help="sampling steps; default: the run's recipe"),
    guidance: float = typer.Option(None, "--guidance", min=0.0, help="classifier-free guidance scale; default: the run's recipe"),
    scheduler: str = typer.Option(None, "--scheduler", help="pndm, ddim, euler or dpm++; default: the run's recipe"),
    num_images: int = typer.Option(1, "--num-images", min=1, help="images per prompt"),
) -> None:
    """Generate images from PROMPTs with a trained student and its frozen backbone."""
    from dataclasses import asdict, replace

    from polyiap.generate import PromptEncoder, generate_images, load_student_and_backbone
    from polyiap.train.samples import save_png

    student, backbone, settings = load_student_and_backbone(model)
    for prompt in prompts:
        if not prompt.strip():
            console.print("[yellow]warning:[/] an empty --prompt gives the unconditional image (no text guidance)")
    overrides = {"steps": steps, "guidance": guidance, "scheduler": scheduler}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    results = generate_images(student, backbone, prompts, settings, negative_prompt, seed, num_images)
    normalized = PromptEncoder(student, backbone, settings.unconditional)
    normalized.warn_truncation = False
    normalized_prompts = normalized.normalize(prompts)

    output.mkdir(parents=True, exist_ok=True)
    files = []
    for prompt_index, images in enumerate(results):
        for image_index, image in enumerate(images):
            path = output / f"{prompt_index:03d}-seed{seed + image_index}.png"
            text = {"prompt": prompts[prompt_index], "normalized_prompt": normalized_prompts[prompt_index],
                    "seed": str(seed + image_index)}
            save_png(image, path, text)
            files.append({**text, "seed": seed + image_index, "file": path.name})
    record = {"model": str(model), "negative_prompt": negative_prompt, **asdict(settings), "images": files}
    (output / "generate.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    console.print(f"[green]wrote[/] {len(files)} image(s) to {output}")
