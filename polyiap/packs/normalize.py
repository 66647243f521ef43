"""Target-language text normalisation as a language pack declares it."""

import re
import unicodedata
from functools import lru_cache

from polyiap.errors import PolyiapError
from polyiap.packs.schema import Normalization

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3000-\u303f\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")


@lru_cache(maxsize=8)
def _opencc_converter(conversion: str):
    try:
        import opencc
    except ImportError as error:
        raise PolyiapError(
            f"the language pack asks for OpenCC conversion {conversion!r} but the opencc package is missing; "
            "install it with `pip install opencc-python-reimplemented`"
        ) from error
    return opencc.OpenCC(conversion)


def normalize_text(text: str, rules: Normalization) -> str:
    """Return ``text`` normalised by ``rules``, in the order Unicode form, replacements, script, case, whitespace."""
    if rules.unicode_form:
        text = unicodedata.normalize(rules.unicode_form, text)
    for old, new in rules.replacements.items():
        text = text.replace(old, new)
    if rules.opencc:
        text = _opencc_converter(rules.opencc).convert(text)
    if rules.lowercase:
        text = text.lower()
    if rules.collapse_whitespace:
        text = " ".join(text.split())
    if rules.remove_spaces_between_cjk:
        text = _SPACE_BETWEEN_CJK.sub("", text)
    return text
