"""Schema of a language pack (``languages/<code>.yaml``)."""

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from polyiap.config import StrictModel

# NLLB-200 language codes look like jpn_Jpan: an ISO 639-3 code and an ISO 15924 script.
_NLLB_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")
# M2M100 language codes are ISO 639-1 or 639-3 codes, lower case.
_M2M100_CODE = re.compile(r"^[a-z]{2,3}$")


class Normalization(StrictModel):
    """Text normalisation applied to target-language captions in training and to prompts at inference.

    The steps run in this order: Unicode form, replacements, script conversion, case, whitespace.
    """

    unicode_form: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = "NFKC"
    replacements: dict[str, str] = Field(
        {}, description="strings replaced after the Unicode form, for example typographic quotes by ASCII ones; "
                        "an empty replacement deletes the string")
    opencc: Literal["s2t", "t2s", "s2tw", "tw2s", "s2hk", "hk2s", "s2twp", "tw2sp", "t2tw", "t2hk", "t2jp",
                    "jp2t"] | None = Field(None, description="OpenCC conversion, for example t2s (traditional to simplified)")
    collapse_whitespace: bool = True
    remove_spaces_between_cjk: bool = False
    lowercase: bool = False

    @field_validator("replacements")
    @classmethod
    def _non_empty_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if "" in value:
            raise ValueError("a replacement needs a non-empty string to replace; remove the empty key")
        return value


class StudentCandidate(StrictModel):
    """A checkpoint that a student encoder can start from."""

    name: str
    source: str = Field(description="hub id or local folder of a transformers encoder, or `tiny`")
    notes: str = ""


class TranslationModel(StrictModel):
    """The English-to-target machine-translation model that `polyiap prepare` runs.

    ``family`` ``auto`` picks MarianMT, NLLB or M2M100 from the model's config when it is loaded.
    NLLB and M2M100 translate between many languages and need ``target_language``.
    """

    model: str = Field(description="hub id or local folder of a transformers sequence-to-sequence model")
    family: Literal["auto", "marian", "nllb", "m2m100"] = "auto"
    source_language: str | None = Field(None, description="English in the model's codes (eng_Latn for NLLB, en "
                                                         "for M2M100); default: that family's code for English")
    target_language: str | None = Field(None, description="target language in the model's codes, e.g. jpn_Jpan "
                                                         "(NLLB) or ja (M2M100)")
    prefix: str = Field("", description="text put before every English caption, e.g. `>>jpn<< ` for a "
                                        "multi-target Marian model")
    notes: str = ""

    @model_validator(mode="after")
    def _check_languages(self) -> "TranslationModel":
        family = self.family
        if family == "auto":
            name = self.model.lower()
            if "nllb" in name:
                family = "nllb"
            elif "m2m100" in name:
                family = "m2m100"
        if family in ("nllb", "m2m100") and not self.target_language:
            example = "jpn_Jpan" if family == "nllb" else "ja"
            raise ValueError(f"a {family} model translates into many languages, so it needs target_language; "
                             f"add `target_language: {example}` (the model's code for the language)")
        pattern = {"nllb": _NLLB_CODE, "m2m100": _M2M100_CODE}.get(family)
        for key in ("source_language", "target_language"):
            code = getattr(self, key)
            if pattern is not None and code is not None and not pattern.match(code):
                example = "jpn_Jpan" if family == "nllb" else "ja"
                raise ValueError(f"{key} {code!r} is not a {family} language code; write it like {example!r}")
        return self


class EvalSuite(StrictModel):
    """Locations and caption file layout of an evaluation suite.

    Relative paths are relative to the pack file. Each caption file row gives one generated image.
    """

    captions: str | None = Field(None, description="caption file; `--captions PATH` on the command line overrides it")
    images: str | None = Field(None, description="folder of the reference images (searched recursively by file name); "
                                                 "default: the caption file's folder")
    format: Literal["jsonl", "aic-icc"] = Field(
        "jsonl", description="jsonl: one JSON object per line; aic-icc: the AI Challenger caption JSON list")
    caption_field: str = Field("caption", description="field with the target-language caption (a string or a list)")
    caption_index: int = Field(0, ge=0, description="which caption to use when the field contains a list")
    english_field: str | None = Field(None, description="field with the English caption, used by `--model teacher`")
    image_field: str = Field("image", description="field with the reference image's file name or relative path")
    one_per_image: bool = Field(False, description="keep only the first row of each reference image")
    size: int | None = Field(None, gt=0, description="number of captions in the published protocol")
    notes: str = ""


class LanguagePack(StrictModel):
    """Everything polyiap needs to know about one target language."""

    code: str = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$")
    name: str
    native_name: str = ""
    normalization: Normalization = Normalization()
    student_candidates: list[StudentCandidate] = []
    max_length: int = Field(77, gt=1, description="student sequence length in tokens")
    translation_model: TranslationModel | None = Field(
        None, description="a hub id or folder, or a mapping with model, family and language codes")
    clip_model: str | None = Field(None, description="multilingual CLIP model that scores the evaluation suites")
    eval_suites: dict[str, EvalSuite] = {}
    sample_prompts: list[str] = []
    reference_recipe: str = "demo"

    @field_validator("translation_model", mode="before")
    @classmethod
    def _model_id_alone(cls, value):
        return {"model": value} if isinstance(value, str) else value
