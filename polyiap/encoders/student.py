"""The student text encoder: a transformers encoder plus a linear projection to the backbone's width.

For backbones that read a pooled text embedding (SDXL) the student also has a pooled head, and for
backbones whose cross-attention reads a text mask (PixArt) it returns its tokenizer's padding mask.
"""

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from polyiap.backbones.base import TextConditioning
from polyiap.encoders.loaders import ENCODERS, resolve_kind

logger = logging.getLogger(__name__)

STUDENT_CONFIG = "student.json"
POOLED_HEAD_FILE = "pooled_head.safetensors"


def encoder_width(encoder: nn.Module) -> int:
    config = encoder.config
    return getattr(config, "hidden_size", None) or getattr(config, "d_model")


class StudentEncoder(nn.Module):
    """A trainable text encoder whose output sequence has the backbone's context width.

    Args:
        encoder: a transformers encoder whose output has ``last_hidden_state``.
        tokenizer: its tokenizer; captions are padded to ``max_length`` in training and inference alike.
        context_dim: the backbone's cross-attention context width.
        max_length: tokens per caption.
        use_attention_mask: whether the padding mask is passed to ``encoder``.
        kind: the loader kind (see `ENCODERS`), stored so the saved student loads the same way.
        metadata: extra facts saved with the student (language, normalisation, unconditional source).
        pooled_dim: width of the pooled embedding head (the mean of the unpadded token states, projected);
            None for backbones without a pooled embedding.
        output_mask: whether the conditioning carries the padding mask, for backbones whose
            cross-attention reads one.
    """

    def __init__(self, encoder: nn.Module, tokenizer, context_dim: int, max_length: int,
                 use_attention_mask: bool = True, kind: str = "bert-like", metadata: dict | None = None,
                 pooled_dim: int | None = None, output_mask: bool = False):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.context_dim = context_dim
        self.max_length = max_length
        self.use_attention_mask = use_attention_mask
        self.kind = kind
        self.metadata = dict(metadata or {})
        width = encoder_width(encoder)
        self.projection = nn.Linear(width, context_dim) if width != context_dim else None
        self.pooled_dim, self.output_mask = pooled_dim, output_mask
        self.pooled_head = nn.Linear(width, pooled_dim) if pooled_dim else None

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(list(texts), padding="max_length", max_length=self.max_length, truncation=True,
                                return_tensors="pt")
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                conditioning: bool = False) -> torch.Tensor | TextConditioning:
        """Return the (B, L, context_dim) sequence, or with ``conditioning`` the whole `TextConditioning`.

        Training calls the module itself with ``conditioning=True``, so that a distributed wrapper
        registers the pooled head's parameters as used in the forward pass.
        """
        mask = attention_mask if self.use_attention_mask else None
        hidden = self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state  # (B, L, width)
        states = self.projection(hidden) if self.projection is not None else hidden  # (B, L, context_dim)
        if not conditioning:
            return states
        pooled = self._pool(hidden, attention_mask) if self.pooled_head is not None else None
        return TextConditioning(states, pooled, attention_mask if self.output_mask else None)

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.pooled_head(mean)  # (B, pooled_dim)

    def encode(self, texts: list[str]) -> TextConditioning:
        """Tokenise and encode ``texts`` on the student's device."""
        device = next(self.parameters()).device
        tokens = {key: value.to(device) for key, value in self.tokenize(texts).items()}
        return self(**tokens, conditioning=True)

    def save(self, folder: Path) -> None:
        """Write ``text_encoder/`` and ``tokenizer/`` (``save_pretrained``), the projection and ``student.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        # Stock diffusers pipelines pass the padding mask to a text encoder only when this flag is set.
        self.encoder.config.use_attention_mask = self.use_attention_mask
        self.encoder.save_pretrained(folder / "text_encoder")
        self.tokenizer.save_pretrained(folder / "tokenizer")
        if self.projection is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.projection.state_dict().items()},
                      folder / "projection.safetensors")
        if self.pooled_head is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.pooled_head.state_dict().items()},
                      folder / POOLED_HEAD_FILE)
        config = {"pooled_dim": self.pooled_dim, "output_mask": self.output_mask,"kind": self.kind, "context_dim": self.context_dim, "max_length": self.max_length,
                  "use_attention_mask": self.use_attention_mask, "projection": self.projection is not None,
                  **self.metadata}
        (folder / STUDENT_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "StudentEncoder":
        """Load a student written by `save`."""
        from transformers import AutoTokenizer

        config = json.loads((folder / STUDENT_CONFIG).read_text())
        kind = config.pop("kind")
        encoder = ENCODERS.get(resolve_kind(kind, folder / "text_encoder"))(folder / "text_encoder", False)
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        context_dim, max_length = config.pop("context_dim"), config.pop("max_length")
        use_mask = config.pop("use_attention_mask")
        has_projection = config.pop("projection")
        # Students saved before pooled heads and mask outputs existed lack both keys.
        pooled_dim, output_mask = config.pop("pooled_dim", None), config.pop("output_mask", False)
        student = cls(encoder, tokenizer, context_dim, max_length, use_mask, kind, config, pooled_dim, output_mask)
        if has_projection:
            student.projection.load_state_dict(load_file(folder / "projection.safetensors"))
        if pooled_dim:
            student.pooled_head.load_state_dict(load_file(folder / POOLED_HEAD_FILE))
        return student
