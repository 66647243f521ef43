"""The student's text encoder as one safetensors file, with what is needed to rebuild it in the metadata.

The metadata contains the transformers architecture and config, the tokenizer (``tokenizer.json``, with
the language pack's normalisation in its normalizer), the padding length and whether the encoder reads
the padding mask. The ComfyUI node in ``integrations/comfyui`` reads this format; it needs transformers,
tokenizers and safetensors, not polyiap.
"""

import json
import os
import tempfile
from pathlib import Path

from polyiap.encoders import StudentEncoder
from polyiap.errors import PolyiapError
from polyiap.export.text_encoder import ExportError, stock_text_encoder, write_tokenizer

SINGLE_FILE_FORMAT = "polyiap-text-encoder/1"


def export_single_file(student: StudentEncoder, output: Path, force: bool = False) -> dict[str, str]:
    """Write the text encoder to the safetensors file ``output`` (atomically) and return its metadata."""
    from safetensors.torch import save_model

    output = Path(output)
    if output.suffix != ".safetensors":
        raise PolyiapError(f"--output {str(output)!r} must end in .safetensors for the single-file format")
    if output.exists() and not force:
        raise PolyiapError(f"--output {str(output)!r} exists; choose another name or pass --force to replace it")
    if student.pooled_head is not None:
        raise ExportError("the single-file format and the ComfyUI node carry the token states only, and this student "
                          f"also has a {student.pooled_dim} wide pooled head that SDXL reads; export the pipeline "
                          "folder (--format pipeline) instead")
    encoder = stock_text_encoder(student)
    metadata = single_file_metadata(student, encoder)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    os.close(handle)
    try:
        # save_model keeps one copy of tied weights (T5 shares its embedding table), unlike save_file.
        save_model(encoder.cpu(), partial, metadata=metadata)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return metadata


def single_file_metadata(student: StudentEncoder, encoder) -> dict[str, str]:
    """Return the string metadata that rebuilds ``encoder`` and the student's tokenizer."""
    with tempfile.TemporaryDirectory() as folder:
        write_tokenizer(student, Path(folder))
        tokenizer_json = Path(folder, "tokenizer.json")
        if not tokenizer_json.is_file():
            raise PolyiapError("the single-file format needs a fast tokenizer (tokenizer.json), and this student's "
                               "tokenizer has none; export the pipeline folder instead")
        tokenizer = tokenizer_json.read_text(encoding="utf-8")
    special = student.tokenizer
    return {
        "format": SINGLE_FILE_FORMAT,
        "architecture": type(encoder).__name__,
        "config": encoder.config.to_json_string(use_diff=False),
        "tokenizer": tokenizer,
        "pad_token": special.pad_token,
        "max_length": str(student.max_length),
        "use_attention_mask": json.dumps(student.use_attention_mask),
        "context_dim": str(student.context_dim),
        "language": str(student.metadata.get("language", "")),
        "backbone": json.dumps(student.metadata.get("backbone") or {}),
    }
