"""CLIP score with Chinese CLIP (transformers' ``ChineseCLIPModel``): 100 x max(cos, 0), averaged.

The computation is ours: unit-normalised projected image and text embeddings, their cosine per
(image, caption) pair, clipped at zero and scaled by 100, as CLIP score is usually reported.
"""

import hashlib
from pathlib import Path

import torch
from PIL import Image

from polyiap.errors import PolyiapError
from polyiap.hub import resolve_model_source

RANDOM_INIT_MARK = "polyiap_random_init"


class ClipScorer:
    """A Chinese CLIP model and its processor, loaded from a folder or hub id."""

    def __init__(self, source: str, batch_size: int = 32):
        from transformers import ChineseCLIPModel, ChineseCLIPProcessor

        self.source = source
        folder = resolve_model_source(source, "CLIP scorer", "--clip-model")
        _check_chinese_clip(folder, source)
        try:
            self.model = ChineseCLIPModel.from_pretrained(folder).eval()
            self.processor = ChineseCLIPProcessor.from_pretrained(folder)
        except (OSError, ValueError) as error:
            raise PolyiapError(f"{folder} is not a Chinese CLIP folder ({error}); pass a folder written by "
                               "ChineseCLIPModel.save_pretrained with its processor, via --clip-model") from None
        self.random_init = bool(getattr(self.model.config, RANDOM_INIT_MARK, False))
        self.folder, self.batch_size = folder.resolve(), batch_size

    def weights_sha256(self) -> str:
        """Return one SHA-256 over the folder's weight files, in name order."""
        digest = hashlib.sha256()
        for path in sorted(self.folder.glob("*.safetensors")) + sorted(self.folder.glob("*.bin")):
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def _max_text_length(self) -> int:
        limit = self.model.config.text_config.max_position_embeddings
        return min(self.processor.tokenizer.model_max_length, limit)

    @torch.no_grad()
    def embed_texts(self, captions: list[str]) -> torch.Tensor:
        tokens = self.processor.tokenizer(captions, padding=True, truncation=True, max_length=self._max_text_length(),
                                          return_tensors="pt")
        features = self.model.get_text_features(**tokens)
        return _unit(features.pooler_output if hasattr(features, "pooler_output") else features)

    @torch.no_grad()
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        features = self.model.get_image_features(pixel_values=pixels)
        return _unit(features.pooler_output if hasattr(features, "pooler_output") else features)

    def scores(self, image_files: list[Path], captions: list[str]) -> list[float]:
        """Return 100 x max(cos, 0) for each (image, caption) pair."""
        result: list[float] = []
        for start in range(0, len(captions), self.batch_size):
            batch = slice(start, start + self.batch_size)
            images = [_load_rgb(path) for path in image_files[batch]]
            cosine = (self.embed_images(images) * self.embed_texts(captions[batch])).sum(dim=-1)
            result.extend((100 * cosine.clamp(min=0)).tolist())
        return result


def _unit(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=-1, keepdim=True)


def _load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def write_random_chinese_clip(folder: Path, captions: list[str], seed: int = 0) -> Path:
    """Save a small randomly initialised Chinese CLIP with a vocabulary built from ``captions``.

    It lets `polyiap eval` run offline; scores from it are marked as not comparable to published ones.
    """
    from transformers import (ChineseCLIPConfig, ChineseCLIPImageProcessor, ChineseCLIPModel,
                              ChineseCLIPProcessor)

    from polyiap.tokenizer_build import train_wordpiece

    tokenizer = train_wordpiece(captions, vocab_size=4096, max_length=52)
    config = ChineseCLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 64, "image_size": 64, "patch_size": 8, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "intermediate_size": 128},
        projection_dim=32)
    setattr(config, RANDOM_INIT_MARK, True)
    torch.manual_seed(seed)
    model = ChineseCLIPModel(config)
    image_processor = ChineseCLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    ChineseCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _check_chinese_clip(folder: Path, source: str) -> None:
    """Raise a clear error for a CLIP model of another family, such as a pack's multilingual CLIP."""
    import json

    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return  # from_pretrained reports the unreadable folder
    if model_type != "chinese_clip":
        raise PolyiapError(f"CLIP scorer {source!r} has model_type {model_type!r}; polyiap computes CLIP score with "
                           "Chinese CLIP models (model_type chinese_clip) only, so multilingual CLIP scoring is not "
                           "available yet; run with --metrics fid, or pass a Chinese CLIP folder via --clip-model")
