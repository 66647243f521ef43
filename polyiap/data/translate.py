"""English-to-target machine translation with a transformers sequence-to-sequence model.

Supported families: MarianMT (one model per language pair, or a multi-target model selected with a
``>>xxx<<`` prefix), NLLB-200 and M2M100 (one model for many languages, selected by a forced first
token).
"""

import json
import logging
from pathlib import Path

import torch

from polyiap.errors import ConfigError, DataError, ModelNotAvailableError
from polyiap.hub import resolve_model_source
from polyiap.packs import TranslationModel

logger = logging.getLogger(__name__)

ENGLISH_CODES = {"nllb": "eng_Latn", "m2m100": "en"}


def detect_family(folder: Path, tokenizer) -> str:
    """Return marian, nllb or m2m100 from the model's config and tokenizer class."""
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, json.JSONDecodeError):
        model_type = None
    if model_type == "marian":
        return "marian"
    if model_type == "m2m_100":
        return "nllb" if "nllb" in type(tokenizer).__name__.lower() else "m2m100"
    raise DataError(f"translation model {folder} has model_type {model_type!r}; polyiap prepare runs MarianMT, NLLB "
                    "and M2M100 models: pick one of those or set translation_model.family")


class Translator:
    """Translates English captions in batches.

    Args:
        spec: the pack's translation model (or one given with --translation-model).
        pack_file: the pack's file, named in errors about its language codes.
        batch_size: captions per generate call.
        num_beams: beam width; 1 is greedy decoding.
        max_new_tokens: maximum translation length in tokens.
        device: torch device.
    """

    def __init__(self, spec: TranslationModel, pack_file: str, batch_size: int = 32, num_beams: int = 4,
                 max_new_tokens: int = 128, device: str = "cpu"):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        folder = resolve_model_source(spec.model, "translation model", "--translation-model")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(folder).to(device).eval()
        except (OSError, ValueError) as error:
            raise ModelNotAvailableError(
                f"failed to load the translation model from {folder} ({error}); pass --translation-model with "
                "a folder written by save_pretrained that holds a seq2seq model and its tokenizer") from error
        self.family = detect_family(folder, self.tokenizer) if spec.family == "auto" else spec.family
        self.spec, self.batch_size, self.device = spec, batch_size, device
        self.generate_options = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
        self._select_languages(pack_file)
        limit = getattr(self.tokenizer, "model_max_length", 512)
        self.max_input_tokens = limit if isinstance(limit, int) and limit < 100_000 else 512
        logger.info("translating with %s (%s)", spec.model, self.family)

    def _select_languages(self, pack_file: str) -> None:
        if self.family == "marian":
            return
        if not self.spec.target_language:
            raise ConfigError(pack_file, "translation_model.target_language",
                              f"{self.spec.model} is a {self.family} model, which needs the target language code",
                              "add target_language, e.g. jpn_Jpan (nllb) or ja (m2m100)")
        self.tokenizer.src_lang = self.spec.source_language or ENGLISH_CODES[self.family]
        target = self.spec.target_language
        token_id = self.tokenizer.convert_tokens_to_ids(target if self.family == "nllb" else f"__{target}__")
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ConfigError(pack_file, "translation_model.target_language",
                              f"{target!r} is not a language of {self.spec.model}",
                              "use one of the model's language codes (see its model card)")
        self.generate_options["forced_bos_token_id"] = token_id

    @torch.no_grad()
    def translate(self, captions: list[str]) -> list[str]:
        """Return one translation per caption, in order; batches are sorted by length to limit padding."""
        order = sorted(range(len(captions)), key=lambda index: len(captions[index]))
        results: list[str] = [""] * len(captions)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            texts = [self.spec.prefix + captions[index] for index in chunk]
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                    max_length=self.max_input_tokens).to(self.device)
            inputs.pop("token_type_ids", None)
            outputs = self.model.generate(**inputs, **self.generate_options)
            for index, text in zip(chunk, self.tokenizer.batch_decode(outputs, skip_special_tokens=True)):
                results[index] = text.strip()
        return results
