"""Load a polyiap single-file text encoder and encode prompts with it, without polyiap.

The file is written by ``polyiap export --format single-file``: a safetensors file whose metadata contains
the transformers architecture and config, the tokenizer (with the language's normalisation in its
normalizer), the padding length and whether the encoder reads the padding mask.
"""

import json

import torch

FORMAT = "polyiap-text-encoder/1"


class PolyiapTextEncoder:
    """A student text encoder rebuilt from its single file; `encode` returns what the denoiser reads."""

    def __init__(self, path: str, device: str | torch.device = "cpu"):
        import transformers
        from safetensors import safe_open
        from safetensors.torch import load_model
        from tokenizers import Tokenizer

        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a polyiap text encoder file (format {metadata.get('format')!r}, "
                             f"expected {FORMAT!r}); write one with `polyiap export --format single-file`")
        config = json.loads(metadata["config"])
        model_class = getattr(transformers, metadata["architecture"])
        self.model = model_class(transformers.AutoConfig.for_model(config.pop("model_type"), **config))
        load_model(self.model, path, strict=True)
        self.model.to(device).eval()
        self.device = device
        self.max_length = int(metadata["max_length"])
        self.use_attention_mask = json.loads(metadata["use_attention_mask"])
        self.context_dim = int(metadata["context_dim"])
        self.language = metadata.get("language", "")
        self.tokenizer = Tokenizer.from_str(metadata["tokenizer"])
        self.tokenizer.enable_truncation(self.max_length)
        pad_token = metadata["pad_token"]
        self.tokenizer.enable_padding(length=self.max_length, pad_id=self.tokenizer.token_to_id(pad_token),
                                      pad_token=pad_token)

    def tokenize(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (input_ids, attention_mask), each (1, max_length), as the student saw them in training."""
        encoding = self.tokenizer.encode(text)
        return torch.tensor([encoding.ids]), torch.tensor([encoding.attention_mask])

    @torch.no_grad()
    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (states (1, max_length, context_dim), pooled (1, context_dim)) for ``text``.

        ``pooled`` is the state at the last text token, the position a CLIP text encoder pools from;
        SD 1.x and 2.x denoisers do not read it.
        """
        input_ids, mask = self.tokenize(text)
        states = self.model(input_ids.to(self.device),
                            attention_mask=mask.to(self.device) if self.use_attention_mask else None)[0]
        last = int(mask[0].sum()) - 1
        return states.float().cpu(), states[:, last].float().cpu()
