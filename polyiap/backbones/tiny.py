"""``tiny``: an SD 1.x-architecture model built from config with random weights, for tests and the demo.

It is built once, saved in the standard diffusers folder layout under the polyiap cache folder
(``$POLYIAP_CACHE``, default ``~/.cache/polyiap``) and always loaded back through the SD 1.x adapter, so
it exercises the same loading code as a real checkpoint.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from polyiap.assets import asset_dir
from polyiap.backbones.registry import BACKBONES
from polyiap.backbones.sd1 import SD1Backbone

logger = logging.getLogger(__name__)

TINY_CONFIG = {
    "version": 2,
    "seed": 0,
    "resolution": 64,
    "context_dim": 64,
    "tokenizer_vocab_size": 1000,
    "max_length": 77,
    "text_layers": 2,
    "unet_channels": [32, 64],
    "vae_channels": [16, 32, 32],
}


def cache_root() -> Path:
    return Path(os.environ.get("POLYIAP_CACHE", Path.home() / ".cache" / "polyiap"))


def tiny_backbone_folder(config: dict = TINY_CONFIG) -> Path:
    """Return the folder of the tiny backbone, building it first if the cache does not have it."""
    return cached_pipeline_folder("tiny-sd1", config, build_tiny_pipeline)


def cached_pipeline_folder(prefix: str, config: dict, build: Callable[[dict], Any]) -> Path:
    """Return the cached folder of the pipeline that ``build(config)`` returns, building and saving it once."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_root() / "backbones" / f"{prefix}-{digest}"
    if (folder / "model_index.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and rename, so an interrupted build never leaves a partial model.
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        build(config).save_pretrained(staging)
        try:
            os.replace(staging, folder)
        except OSError:
            if not (folder / "model_index.json").is_file():  # another process did not win the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("built the %s backbone in %s", prefix, folder)
    return folder


def build_tiny_pipeline(config: dict):
    """Return a randomly initialised SD 1.x pipeline whose sizes come from ``config``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from polyiap.tokenizer_build import train_clip_bpe

    tokenizer = train_clip_bpe(english_captions(), config["tokenizer_vocab_size"], config["max_length"])
    vae_channels = config["vae_channels"]
    latent_size = config["resolution"] // 2 ** (len(vae_channels) - 1)

    with torch.random.fork_rng():
        torch.manual_seed(config["seed"])
        text_encoder = CLIPTextModel(CLIPTextConfig(
            # SD 1.x feeds the text encoder's last hidden states to the UNet, so its width is the context width.
            vocab_size=len(tokenizer), hidden_size=config["context_dim"],
            intermediate_size=2 * config["context_dim"], num_hidden_layers=config["text_layers"],
            num_attention_heads=2, max_position_embeddings=config["max_length"], projection_dim=config["context_dim"],
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
        vae = AutoencoderKL(
            block_out_channels=vae_channels, down_block_types=["DownEncoderBlock2D"] * len(vae_channels),
            up_block_types=["UpDecoderBlock2D"] * len(vae_channels), latent_channels=4, norm_num_groups=8,
            layers_per_block=1, sample_size=config["resolution"])
        unet = UNet2DConditionModel(
            sample_size=latent_size, block_out_channels=config["unet_channels"], layers_per_block=1,
            down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            cross_attention_dim=config["context_dim"], attention_head_dim=8, norm_num_groups=16)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1,
                              set_alpha_to_one=False)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def english_captions() -> list[str]:
    rows = (asset_dir("recipes") / "data" / "coco-cc" / "triplets.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(row)["en"] for row in rows if row.strip()]


@BACKBONES.register("tiny")
class TinyBackbone(SD1Backbone):
    """The tiny SD 1.x-architecture model; ``source`` may name another folder built the same way."""

    family = "tiny"
    reference = None  # its sizes come from TINY_CONFIG, not from a configuration file

    @classmethod
    def load(cls, source: str | None, revision: str | None = None) -> "TinyBackbone":
        folder = Path(source) if source else tiny_backbone_folder()
        return super().load(str(folder), revision)
