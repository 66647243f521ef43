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


def tokenizer_normalizer(rules: Normalization):
    """Return a `tokenizers` normalizer that applies ``rules`` inside a fast tokenizer, in `normalize_text`'s order.

    An exported tokenizer carries it, so that pipelines and nodes without polyiap normalise prompts
    the same way. Returns None when ``rules`` change nothing.
    """
    from tokenizers import Regex, normalizers

    steps = []
    if rules.unicode_form:
        steps.append(getattr(normalizers, rules.unicode_form)())
    if rules.opencc:
        steps.extend(_opencc_replacements(rules.opencc))
    if rules.lowercase:
        steps.append(normalizers.Lowercase())
    if rules.collapse_whitespace:
        steps.extend([normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])
    if rules.remove_spaces_between_cjk:
        steps.append(normalizers.Replace(Regex(_SPACE_BETWEEN_CJK.pattern), ""))
    return normalizers.Sequence(steps) if steps else None


def _opencc_replacements(conversion: str) -> list:
    """Return one Replace normalizer per entry of the OpenCC dictionaries of ``conversion``, phrases first.

    NOTE: OpenCC segments text by longest match over phrases and characters together. Replacing the
    longest phrases first and single characters last gives the same text unless two dictionary phrases
    overlap; the tests check the shipped captions for such cases.
    """
    from tokenizers import normalizers

    steps = []
    for entries in _opencc_dictionaries(conversion):
        for source in sorted(entries, key=len, reverse=True):
            if entries[source] != source:
                steps.append(normalizers.Replace(source, entries[source]))
    return steps


def _opencc_dictionaries(conversion: str) -> list[dict[str, str]]:
    """Return the conversion chain of ``conversion`` as one mapping per step, read from the opencc package's files."""
    import json
    from pathlib import Path

    _opencc_converter(conversion)  # raises a clear error when opencc is missing
    import opencc

    package = Path(opencc.__file__).parent
    config = json.loads((package / "config" / f"{conversion}.json").read_text(encoding="utf-8"))
    chain = []
    for step in config["conversion_chain"]:
        entries: dict[str, str] = {}
        for file in reversed(_dictionary_files(step["dict"])):  # earlier files of a group take precedence
            for line in (package / "dictionary" / file).read_text(encoding="utf-8").splitlines():
                if "\t" in line:
                    source, targets = line.split("\t", 1)
                    entries[source] = targets.split(" ")[0]
        chain.append(entries)
    return chain


def _dictionary_files(spec: dict) -> list[str]:
    if spec.get("type") == "group":
        return [file for item in spec["dicts"] for file in _dictionary_files(item)]
    return [spec["file"]]
