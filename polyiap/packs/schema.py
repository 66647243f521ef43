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
    """Locations of an evaluation suite's captions and reference images."""

    captions: str | None = None
    images: str | None = None
    caption_field: str | None = None
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
