"""Schema of a language pack (``languages/<code>.yaml``)."""

from typing import Literal

from pydantic import Field

from polyiap.config import StrictModel


class Normalization(StrictModel):
    """Text normalisation applied to target-language captions in training and to prompts at inference."""

    unicode_form: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = "NFKC"
    opencc: Literal["s2t", "t2s", "s2tw", "tw2s", "s2hk", "hk2s", "s2twp", "tw2sp", "t2tw", "t2hk", "t2jp",
                    "jp2t"] | None = Field(None, description="OpenCC conversion, for example t2s (traditional to simplified)")
    collapse_whitespace: bool = True
    remove_spaces_between_cjk: bool = False
    lowercase: bool = False


class StudentCandidate(StrictModel):
    """A checkpoint that a student encoder can start from."""

    name: str
    source: str = Field(description="hub id or local folder of a transformers encoder, or `tiny`")
    notes: str = ""


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
    translation_model: str | None = None
    clip_model: str | None = None
    eval_suites: dict[str, EvalSuite] = {}
    sample_prompts: list[str] = []
    reference_recipe: str = "demo"
