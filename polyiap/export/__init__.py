"""Export a trained student where users make images: a diffusers pipeline folder or one safetensors file."""

from pathlib import Path

from polyiap.export import families  # noqa: F401  (registers the SDXL and PixArt exporters)
from polyiap.export.pipeline import EXPORT_RECORD, PIPELINE_EXPORTERS, ExportedLayout, export_pipeline
from polyiap.export.single_file import SINGLE_FILE_FORMAT, export_single_file
from polyiap.export.text_encoder import ExportError, stock_text_encoder

__all__ = ["EXPORT_RECORD", "PIPELINE_EXPORTERS", "ExportedLayout", "SINGLE_FILE_FORMAT", "ExportError", "export_pipeline",
           "export_single_file", "run_empty_prompt_rate", "stock_text_encoder"]


def run_empty_prompt_rate(model: Path) -> float | None:
    """Return ``data.empty_prompt_rate`` from a run folder's ``config.yaml``, or None for a bare student folder."""
    from polyiap.train.run_folder import RunFolder

    run = RunFolder(model)
    if not run.config_file.is_file():
        return None
    recipe = run.read_config().get("recipe") or {}
    return (recipe.get("data") or {}).get("empty_prompt_rate")
