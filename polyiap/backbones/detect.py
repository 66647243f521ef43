"""Family detection of a diffusers pipeline folder from the pipeline class in its ``model_index.json``."""

import json
from pathlib import Path

from polyiap.errors import UnsupportedModelError

# The pipeline classes each family loads. SD 1.x and SD 2.x share one and differ in their UNets.
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": ("sd1", "sd2"),
    "StableDiffusionXLPipeline": ("sdxl",),
    "PixArtAlphaPipeline": ("pixart",),
    "PixArtSigmaPipeline": ("pixart",),
}
_SD2_CONTEXT_DIM = 1024


def pipeline_class(folder: Path) -> str:
    """Return the ``_class_name`` of ``folder/model_index.json``."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise UnsupportedModelError(f"{folder} has no model_index.json, so it is not a diffusers pipeline folder; "
                                    "pass the folder written by `DiffusionPipeline.save_pretrained`")
    return json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")


def detect_family(folder: Path) -> str:
    """Return the backbone family of a pipeline folder, or raise naming the supported pipeline classes."""
    name = pipeline_class(folder)
    families = PIPELINE_FAMILIES.get(name)
    if families is None:
        raise UnsupportedModelError(
            f"{folder} contains a {name or 'unnamed'} pipeline, which no backbone family supports; supported: "
            f"{_supported()}. Use a folder of one of these pipelines or set backbone.family explicitly")
    if families == ("sd1", "sd2"):
        # SD 2.x UNets read 1024-wide text and project in their transformer blocks with linear layers;
        # SD 1.x UNets read 768-wide text and use 1x1 convolutions there.
        unet_config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        is_sd2 = unet_config.get("cross_attention_dim") == _SD2_CONTEXT_DIM or unet_config.get("use_linear_projection")
        return "sd2" if is_sd2 else "sd1"
    return families[0]


def check_pipeline_class(folder: Path, family: str) -> None:
    """Raise when ``folder`` contains a pipeline that ``family`` cannot load."""
    name = pipeline_class(folder)
    if family in PIPELINE_FAMILIES.get(name, ()):
        return
    expected = [cls for cls, families in PIPELINE_FAMILIES.items() if family in families]
    raise UnsupportedModelError(
        f"{folder} contains a {name or 'unnamed'} pipeline, but backbone family {family!r} loads "
        f"{' or '.join(expected)}; set backbone.family to the folder's family ({_supported()}) or `auto`")


def _supported() -> str:
    return "; ".join(f"{cls} ({'/'.join(families)})" for cls, families in PIPELINE_FAMILIES.items())
