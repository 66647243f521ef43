"""The commented pack skeleton that `polyiap packs new` writes, and detection of its unfilled fields."""

import re
from typing import Any

PLACEHOLDER = "<FILL IN"
_PLACEHOLDER = re.compile(r"^<FILL IN: (?P<hint>.*)>$")


def find_placeholder(data: Any, path: str = "") -> tuple[str, str] | None:
    """Return (field path, hint) of the first value that is still a skeleton placeholder, or None."""
    if isinstance(data, str):
        match = _PLACEHOLDER.match(data.strip())
        if match:
            return path or "(top level)", match["hint"]
        return (path, "a real value") if data.startswith(PLACEHOLDER) else None
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        found = find_placeholder(value, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def pack_skeleton(code: str) -> str:
    """Return the YAML text of a new pack for ``code`` with every field to fill marked ``<FILL IN: ...>``."""
    return f"""\
# Language pack for {code!r}, written by `polyiap packs new {code}`.
# Replace every "<FILL IN: ...>" value, then run `polyiap packs validate {code}.yaml`.
# Validation names the first field that still contains a placeholder. docs/adding-a-language.md explains
# every step from this file to a trained and evaluated student.
include: _base.yaml              # NFKC and whitespace collapsing, max_length 77, reference recipe demo
code: {code}
name: "<FILL IN: the language's English name, e.g. Japanese>"
native_name: "<FILL IN: the language's own name for itself, e.g. 日本語>"

normalization:                   # applied to training captions and to prompts at inference
  unicode_form: NFKC             # NFC keeps compatibility characters; NFKC folds full-width forms
  replacements: {{}}               # e.g. {{"’": "'"}}: typographic punctuation to one spelling
  # opencc: t2s                  # script conversion with OpenCC (Chinese variants only)
  # remove_spaces_between_cjk: true   # for languages written without spaces (ja, zh)
  # lowercase: false

# Checkpoints the student text encoder can start from, best first. `source` is a Hugging Face hub id
# or a local folder of a transformers encoder; `tiny` builds a small random BERT for smoke tests.
student_candidates:
  - name: "<FILL IN: a short name, e.g. xlm-roberta>"
    source: "<FILL IN: a hub id such as xlm-roberta-base, or a local folder>"
    notes: ""
  - name: tiny
    source: tiny
    notes: a small randomly initialised BERT with a character vocabulary built from the training captions

# English-to-{code} machine translation for `polyiap prepare`. Use Helsinki-NLP/opus-mt-en-{code} where it
# exists (family marian); otherwise facebook/nllb-200-distilled-600M (family nllb, target_language such
# as jpn_Jpan) or facebook/m2m100_418M (family m2m100, target_language such as ja).
translation_model:
  model: "<FILL IN: a hub id or local folder, e.g. Helsinki-NLP/opus-mt-en-{code}>"
  family: auto                   # auto, marian, nllb or m2m100
  # target_language: xxx_Xxxx    # required by nllb and m2m100

# The multilingual CLIP model that scores generated images against the evaluation captions.
clip_model: "<FILL IN: a hub id, e.g. M-CLIP/XLM-Roberta-Large-Vit-L-14>"

# Evaluation suites: caption files and image folders are passed with --captions and --images
# (or set `captions:`/`images:` here, relative to this file). Example, an XTD10-style JSONL file:
eval_suites: {{}}
#  xtd10:
#    caption_field: {code}
#    english_field: en
#    image_field: image_file
#    size: 1000
#    notes: "--captions: JSONL with image_file, en and {code}; --images: the MS-COCO 2014 images"

# Prompts drawn in the progress grids during training, in the target language.
sample_prompts:
  - "<FILL IN: a short image description in the language, e.g. a brown bear sitting on grass>"
  - "<FILL IN: a second prompt>"
"""
