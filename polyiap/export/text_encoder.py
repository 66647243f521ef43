"""The student as a stock transformers text encoder and tokenizer that diffusers pipelines load unchanged.

A stock Stable Diffusion pipeline tokenises with ``padding="max_length"`` and
``max_length=tokenizer.model_max_length``, passes the padding mask only when
``text_encoder.config.use_attention_mask`` is true, and reads ``text_encoder(...)[0]``. The student is
an encoder plus an optional linear projection, so it is exported as the encoder's
``...ForTokenClassification`` class. Its ``[0]`` output (the logits) is a linear layer on the last
hidden states, and that layer contains the projection (or the identity when there is none). Encoders without such a
class (CLIP text towers) are exported as their own class, which needs the widths to match.
"""

import copy
import json
import logging
from pathlib import Path

import torch
from torch import nn

from polyiap.encoders import StudentEncoder
from polyiap.errors import PolyiapError
from polyiap.packs.normalize import tokenizer_normalizer
from polyiap.prompts import student_normalization

logger = logging.getLogger(__name__)

# Prompts the export checks the stock encoder on: empty, short, mixed-language and longer than most limits.
CHECK_PROMPTS = ["", "一只熊", "a red 汽车 on the road", "海边的一艘小船" * 12]


class ExportError(PolyiapError):
    """A trained student that cannot be written in the requested layout."""


def token_classification_class(model_type: str):
    """Return the transformers ``...ForTokenClassification`` class of ``model_type``, or None."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES

    name = MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES.get(model_type)
    return getattr(transformers, name) if name else None


def stock_text_encoder(student: StudentEncoder) -> nn.Module:
    """Return a standard transformers model whose ``[0]`` output equals the student's states.

    Raises `ExportError` when no standard class can hold the student, or when the converted model's
    output differs from the student's on `CHECK_PROMPTS`.
    """
    config = copy.deepcopy(student.encoder.config)
    config.use_attention_mask = student.use_attention_mask
    head_class = token_classification_class(config.model_type)
    if head_class is not None:
        model = _with_linear_head(student, config, head_class)
    elif student.projection is None:
        model = copy.deepcopy(student.encoder)
        model.config.use_attention_mask = student.use_attention_mask
    else:
        raise ExportError(
            f"the student's encoder ({config.model_type}) has no transformers token-classification class to hold "
            f"its projection from {student.projection.in_features} to {student.context_dim} wide states, so a stock "
            "diffusers pipeline cannot load it without remote code; train a student whose width equals the "
            "backbone's context width, or use a BERT, RoBERTa, XLM-R or T5 encoder")
    model.eval()
    check_same_output(student, model)
    return model


def _with_linear_head(student: StudentEncoder, config, head_class) -> nn.Module:
    width = student.projection.in_features if student.projection is not None else student.context_dim
    config.num_labels = student.context_dim
    config.architectures = [head_class.__name__]
    model = head_class(config)
    missing, unexpected = model.base_model.load_state_dict(student.encoder.state_dict(), strict=False)
    # The student's encoder may carry a pooler that the token-classification class leaves out.
    unexpected = [key for key in unexpected if not key.startswith("pooler.")]
    head = getattr(model, "classifier", None)
    if missing or unexpected or not isinstance(head, nn.Linear) or head.in_features != width:
        raise ExportError(f"cannot map the student's {config.model_type} encoder onto {head_class.__name__}: "
                          f"missing {missing}, unexpected {unexpected}; export needs a standard transformers encoder")
    with torch.no_grad():
        if student.projection is not None:
            head.weight.copy_(student.projection.weight)
            head.bias.copy_(student.projection.bias)
        else:
            head.weight.copy_(torch.eye(width))  # multiplying by the identity is exact in floating point
            head.bias.zero_()
    return model


@torch.no_grad()
def check_same_output(student: StudentEncoder, model: nn.Module) -> None:
    """Raise `ExportError` when ``model`` called as a pipeline calls it differs from the student."""
    was_training = student.training
    student.eval()
    tokens = student.tokenize(CHECK_PROMPTS)
    mask = tokens["attention_mask"] if student.use_attention_mask else None
    device = next(student.parameters()).device
    expected = student(**{key: value.to(device) for key, value in tokens.items()}).cpu()
    model_device = next(model.parameters()).device
    actual = model(tokens["input_ids"].to(model_device),
                   attention_mask=None if mask is None else mask.to(model_device))[0].cpu()
    student.train(was_training)
    if actual.shape != expected.shape or not torch.allclose(actual, expected, rtol=1e-5, atol=1e-5):
        difference = (actual - expected).abs().max().item() if actual.shape == expected.shape else "shape"
        raise ExportError(f"the converted text encoder {type(model).__name__} differs from the student "
                          f"(max difference {difference}); this encoder kind cannot be exported as a stock model")


def write_tokenizer(student: StudentEncoder, folder: Path) -> bool:
    """Write the student's tokenizer as a ``PreTrainedTokenizerFast`` that pads and truncates to the
    student's length and applies its language pack's normalisation.

    The generic fast class loads ``tokenizer.json`` as written, where model-specific classes (such as
    ``BertTokenizer`` in transformers 5) rebuild the normalizer and would drop the normalisation.
    Returns False, after writing the tokenizer unchanged, when it is not a fast (``tokenizers``) one.
    Prompts given to such a tokenizer must be normalised by the caller.
    """
    from tokenizers import Tokenizer, normalizers
    from transformers import PreTrainedTokenizerFast

    source = student.tokenizer
    backend = getattr(source, "backend_tokenizer", None)
    if backend is None:
        source.save_pretrained(folder)
        return False
    backend = Tokenizer.from_str(backend.to_str())  # a copy, so the student's own tokenizer stays as it is
    backend.no_padding()
    backend.no_truncation()
    normalizer = tokenizer_normalizer(student_normalization(student))
    if normalizer is not None:
        own = backend.normalizer
        backend.normalizer = normalizers.Sequence([normalizer, own]) if own is not None else normalizer
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=student.max_length,
                                        padding_side=source.padding_side, truncation_side=source.truncation_side,
                                        **source.special_tokens_map)
    tokenizer.save_pretrained(folder)
    _name_generic_class(folder / "tokenizer_config.json")
    check_same_tokens(student, PreTrainedTokenizerFast.from_pretrained(folder))
    return True


def check_same_tokens(student: StudentEncoder, tokenizer) -> None:
    """Raise `ExportError` when ``tokenizer`` given raw prompts differs from the student given normalised ones."""
    from polyiap.packs import normalize_text

    rules = student_normalization(student)
    prompts = CHECK_PROMPTS + ["一隻熊 站在ＲＥＤ car 旁"]
    expected = student.tokenize([normalize_text(p, rules) for p in prompts])["input_ids"]
    actual = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")["input_ids"]
    if not torch.equal(actual, expected):
        raise ExportError("the exported tokenizer gives other token ids than the student's tokenizer with polyiap's "
                          "normalisation; this tokenizer cannot carry the normalisation")


def _name_generic_class(config_file: Path) -> None:
    """Record ``PreTrainedTokenizerFast``, the name transformers 4.x and 5.x both load, as the tokenizer class."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
