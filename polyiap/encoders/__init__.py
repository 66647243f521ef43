"""Student text encoders: any transformers encoder plus a projection to the backbone's context width."""

import logging

import torch

from polyiap.encoders.compat import check_student, check_unconditional
from polyiap.encoders.loaders import ENCODERS, resolve_kind
from polyiap.encoders.student import StudentEncoder
from polyiap.hub import resolve_model_source
from polyiap.recipes.schema import StudentConfig

__all__ = ["ENCODERS", "StudentEncoder", "build_student", "check_student", "check_unconditional",
           "resolve_student_source"]

logger = logging.getLogger(__name__)

TINY_VOCAB_SIZE = 4000


def resolve_student_source(config: StudentConfig):
    """Return the local folder of the student's initial checkpoint, or None for ``tiny``."""
    if config.init == "tiny":
        return None
    return resolve_model_source(config.init, "student encoder", "student.init")


def build_student(config: StudentConfig, max_length: int, context_dim: int, captions: list[str],
                  seed: int, metadata: dict | None = None, pooled_dim: int | None = None,
                  output_mask: bool = False) -> StudentEncoder:
    """Build the initial student from the recipe.

    Args:
        config: the recipe's ``student`` section.
        max_length: tokens per caption.
        context_dim: the backbone's context width.
        captions: target-language training captions, used only to build the ``tiny`` student's vocabulary.
        seed: seed for randomly initialised weights (the projection and ``tiny`` or ``random_init`` encoders).
        metadata: facts stored with the student.
        pooled_dim: the backbone's pooled embedding width; the student gets a pooled head when set.
        output_mask: whether the student's conditioning carries its padding mask.
    """
    from transformers import AutoTokenizer

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        folder = resolve_student_source(config)
        if folder is None:
            encoder, tokenizer, kind = _tiny_encoder(config, max_length, captions)
        else:
            kind = resolve_kind(config.kind, folder)
            encoder = ENCODERS.get(kind)(folder, config.random_init)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            tokenizer.model_max_length = max_length
        student = StudentEncoder(encoder, tokenizer, context_dim, max_length, config.attention_mask, kind, metadata,
                                 pooled_dim, output_mask)
    if student.projection is not None:
        logger.info("student width %d differs from the context width %d: added a linear projection",
                    student.projection.in_features, context_dim)
    return student


def _tiny_encoder(config: StudentConfig, max_length: int, captions: list[str]):
    from transformers import BertConfig, BertModel

    from polyiap.tokenizer_build import train_wordpiece

    tokenizer = train_wordpiece(captions, TINY_VOCAB_SIZE, max_length)
    bert_config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=config.tiny_hidden_size, num_hidden_layers=config.tiny_layers,
        num_attention_heads=2, intermediate_size=2 * config.tiny_hidden_size, max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id)
    return BertModel(bert_config, add_pooling_layer=False), tokenizer, "bert-like"
