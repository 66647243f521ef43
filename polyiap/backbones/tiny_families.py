"""``tiny-sd2``, ``tiny-sdxl`` and ``tiny-pixart``: models of each family built from ``configs/tiny-*.json``.

Like ``tiny``, each is built once with random weights, saved in its pipeline's diffusers layout under
the polyiap cache folder and loaded back through the family's own adapter.
"""

from pathlib import Path

import torch

from polyiap.backbones.pixart import PixArtBackbone
from polyiap.backbones.reference import ReferenceConfig, load_reference
from polyiap.backbones.registry import BACKBONES
from polyiap.backbones.sd2 import SD2Backbone
from polyiap.backbones.sdxl import SDXLBackbone
from polyiap.backbones.tiny import cached_pipeline_folder, english_captions


def tiny_family_folder(name: str) -> Path:
    """Return the cached folder of the tiny model ``configs/<name>.json`` describes, building it if needed."""
    config = load_reference(name)
    builders = {"tiny-sd2": _build_sd2, "tiny-sdxl": _build_sdxl, "tiny-pixart": _build_pixart}
    raw = {"denoiser": config.denoiser, "text_encoders": config.text_encoders, "build": config.build,
           "max_length": config.max_length, "prediction_type": config.prediction_type}
    return cached_pipeline_folder(name, raw, lambda _: _seeded(builders[name], config))


def _seeded(build, config: ReferenceConfig):
    with torch.random.fork_rng():
        torch.manual_seed(config.build["seed"])
        return build(config)


def _vae(config: ReferenceConfig):
    from diffusers import AutoencoderKL

    channels = config.build["vae_channels"]
    return AutoencoderKL(block_out_channels=channels, down_block_types=["DownEncoderBlock2D"] * len(channels),
                         up_block_types=["UpDecoderBlock2D"] * len(channels), latent_channels=4,
                         norm_num_groups=8, layers_per_block=1, sample_size=config.build["resolution"])


def _clip_text(tokenizer, settings: dict, max_length: int, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    width = settings["hidden_size"]
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
        num_hidden_layers=settings["num_hidden_layers"], num_attention_heads=2, max_position_embeddings=max_length,
        projection_dim=settings.get("projection_dim", width), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(text_config)


def _scheduler_config(config: ReferenceConfig) -> dict:
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
            "steps_offset": 1, "set_alpha_to_one": False, "clip_sample": False,
            "prediction_type": config.prediction_type}


def _build_sd2(config: ReferenceConfig):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from polyiap.tokenizer_build import train_clip_bpe

    tokenizer = train_clip_bpe(english_captions(), config.build["tokenizer_vocab_size"], config.max_length)
    return StableDiffusionPipeline(
        vae=_vae(config), text_encoder=_clip_text(tokenizer, config.text_encoders[0], config.max_length),
        tokenizer=tokenizer, unet=UNet2DConditionModel(**config.denoiser),
        scheduler=DDIMScheduler(**_scheduler_config(config)), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def _build_sdxl(config: ReferenceConfig):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from polyiap.tokenizer_build import train_clip_bpe

    tokenizer = train_clip_bpe(english_captions(), config.build["tokenizer_vocab_size"], config.max_length)
    first, second = config.text_encoders
    scheduler = {k: v for k, v in _scheduler_config(config).items() if k not in ("set_alpha_to_one", "clip_sample")}
    return StableDiffusionXLPipeline(
        vae=_vae(config), text_encoder=_clip_text(tokenizer, first, config.max_length),
        text_encoder_2=_clip_text(tokenizer, second, config.max_length, with_projection=True),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=UNet2DConditionModel(**config.denoiser),
        scheduler=EulerDiscreteScheduler(**scheduler), add_watermarker=False)


def _build_pixart(config: ReferenceConfig):
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    from polyiap.tokenizer_build import build_t5_unigram

    tokenizer = build_t5_unigram(english_captions(), config.build["tokenizer_vocab_size"], config.max_length)
    settings = config.text_encoders[0]
    width = settings["hidden_size"]
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=width, d_kv=width // 2, d_ff=2 * width,
        num_layers=settings["num_hidden_layers"], num_heads=2, relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu", pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))
    # PixArt trains on a linear beta schedule, unlike Stable Diffusion's scaled-linear one.
    scheduler = DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                                            num_train_timesteps=1000, prediction_type=config.prediction_type)
    return PixArtAlphaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=_vae(config),
                               transformer=PixArtTransformer2DModel(**config.denoiser), scheduler=scheduler)


def _tiny_load(adapter: type, name: str):
    """Return a ``load`` classmethod that builds the tiny model when no source folder is given."""

    def load(cls, source: str | None, revision: str | None = None):
        folder = Path(source) if source else tiny_family_folder(name)
        return adapter.load.__func__(cls, str(folder), revision)

    return classmethod(load)


@BACKBONES.register("tiny-sd2")
class TinySD2Backbone(SD2Backbone):
    """A tiny SD 2.x-architecture model (v-prediction); ``source`` may name another folder built the same way."""

    family = "tiny-sd2"
    reference = "tiny-sd2"
    load = _tiny_load(SD2Backbone, "tiny-sd2")


@BACKBONES.register("tiny-sdxl")
class TinySDXLBackbone(SDXLBackbone):
    """A tiny SDXL-architecture model; ``source`` may name another folder built the same way."""

    family = "tiny-sdxl"
    reference = "tiny-sdxl"
    load = _tiny_load(SDXLBackbone, "tiny-sdxl")


@BACKBONES.register("tiny-pixart")
class TinyPixArtBackbone(PixArtBackbone):
    """A tiny PixArt-alpha-architecture model; ``source`` may name another folder built the same way."""

    family = "tiny-pixart"
    reference = "tiny-pixart"
    load = _tiny_load(PixArtBackbone, "tiny-pixart")
