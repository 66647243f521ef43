"""``polyiap export``: a trained student as a stock diffusers pipeline folder or one safetensors file."""

import json
from pathlib import Path

import typer
from rich.console import Console

from polyiap.cli.errors import handle_errors
from polyiap.errors import PolyiapError

console = Console(stderr=True)

FORMATS = ("pipeline", "single-file")


@handle_errors
def export_command(
    model: Path = typer.Option(..., "--model", help="run folder of `polyiap transfer` or a student folder"),
    output: Path = typer.Option(..., "--output", "-o",
                                help="pipeline: a new folder; single-file: a file ending in .safetensors"),
    format: str = typer.Option("pipeline", "--format",
                               help="pipeline: a diffusers folder for DiffusionPipeline.from_pretrained; "
                                    "single-file: the text encoder alone, for the ComfyUI node"),
    force: bool = typer.Option(False, "--force", help="replace a non-empty output folder or an existing file"),
) -> None:
    """Export a trained student where images are made: stock diffusers, ComfyUI."""
    from polyiap.export import EXPORT_RECORD, export_pipeline, export_single_file, run_empty_prompt_rate
    from polyiap.generate import load_student_and_backbone

    if format not in FORMATS:
        raise PolyiapError(f"--format {format!r} is not supported; use one of: {', '.join(FORMATS)}")
    student, backbone, settings = load_student_and_backbone(model)
    if format == "single-file":
        export_single_file(student, output, force)
        console.print(f"[green]wrote[/] the text encoder to {output}")
        return
    export_pipeline(student, backbone, settings, output, force, source=model,
                    empty_prompt_rate=run_empty_prompt_rate(model))
    record = json.loads((output / EXPORT_RECORD).read_text(encoding="utf-8"))
    options = "".join(f", {key}={value!r}" for key, value in record["load_options"].items())
    console.print(f"[green]wrote[/] a diffusers pipeline folder to {output}; load it with "
                  f"DiffusionPipeline.from_pretrained({str(output)!r}{options})")
