"""Loaders of transformers encoders that can serve as students, by kind."""

from pathlib import Path

from torch import nn

from polyiap.registry import Registry

ENCODERS: Registry = Registry("student encoder")

# transformers model types whose AutoModel is not the text encoder alone.
_KIND_BY_MODEL_TYPE = {"t5": "t5-encoder", "mt5": "t5-encoder", "umt5": "t5-encoder",
                       "clip": "clip-text", "clip_text_model": "clip-text", "chinese_clip": "auto"}


_POOLED_TYPES = ("bert", "roberta", "xlm-roberta")


def resolve_kind(kind: str, folder: Path) -> str:
    """Return the loader kind for ``folder``: ``kind`` itself unless it is ``auto``."""
    if kind != "auto":
        ENCODERS.get(kind)
        return kind
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(folder).model_type
    return _KIND_BY_MODEL_TYPE.get(model_type, "bert-like")


@ENCODERS.register("bert-like")
def load_auto_encoder(folder: Path, random_init: bool) -> nn.Module:
    """Load BERT, RoBERTa, XLM-R and other encoders that ``AutoModel`` returns as the bare encoder."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder)
    # The pooler is unused by a student; leaving it out also keeps DDP from waiting for its gradients.
    extra = {"add_pooling_layer": False} if config.model_type in _POOLED_TYPES else {}
    if random_init:
        return AutoModel.from_config(config, **extra)
    return AutoModel.from_pretrained(folder, **extra)


@ENCODERS.register("t5-encoder")
def load_t5_encoder(folder: Path, random_init: bool) -> nn.Module:
    """Load the encoder half of a T5 / mT5 checkpoint."""
    from transformers import T5Config, T5EncoderModel

    if random_init:
        return T5EncoderModel(T5Config.from_pretrained(folder))
    return T5EncoderModel.from_pretrained(folder)


@ENCODERS.register("clip-text")
def load_clip_text(folder: Path, random_init: bool) -> nn.Module:
    """Load the text tower of a CLIP checkpoint."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if random_init:
        return CLIPTextModel(CLIPTextConfig.from_pretrained(folder))
    return CLIPTextModel.from_pretrained(folder)


@ENCODERS.register("auto")
def load_by_model_type(folder: Path, random_init: bool) -> nn.Module:
    """Load with the loader that the checkpoint's model type selects."""
    return ENCODERS.get(resolve_kind("auto", folder))(folder, random_init)
