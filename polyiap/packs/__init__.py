"""Language packs: one YAML file per target language, on shared bases through ``include:``."""

from pathlib import Path

from polyiap.assets import asset_dir
from polyiap.config import read_yaml, validate
from polyiap.errors import ConfigError
from polyiap.packs.normalize import normalize_text
from polyiap.packs.schema import LanguagePack, Normalization, TranslationModel
from polyiap.packs.skeleton import PLACEHOLDER, find_placeholder

__all__ = ["LanguagePack", "Normalization", "TranslationModel", "load_pack", "list_packs", "pack_path",
           "normalize_text", "PLACEHOLDER"]


def packs_dir() -> Path:
    return asset_dir("languages")


def list_packs() -> list[str]:
    """Return the codes of the shipped packs (files starting with ``_`` are shared bases)."""
    return sorted(p.stem for p in packs_dir().glob("*.yaml") if not p.name.startswith("_"))


def pack_path(code_or_path: str) -> Path:
    """Return the file of a shipped pack code, or ``code_or_path`` itself when it names a YAML file."""
    candidate = Path(code_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    path = packs_dir() / f"{code_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(list_packs())
        raise ConfigError(code_or_path, "lang", f"no language pack {code_or_path!r}",
                          f"use one of: {shipped}, or pass the path of a pack file")
    return path


def load_pack(code_or_path: str) -> LanguagePack:
    """Load and validate a language pack by code (``zh``) or by path."""
    path = pack_path(code_or_path)
    raw = read_yaml(path, (packs_dir(),))
    unfilled = find_placeholder(raw)
    if unfilled is not None:
        field, hint = unfilled
        raise ConfigError(str(path), field, "still holds the placeholder of `polyiap packs new`",
                          f"replace it with {hint}")
    pack = validate(LanguagePack, raw, str(path))
    if path.parent.resolve() == packs_dir().resolve() and pack.code != path.stem:
        raise ConfigError(str(path), "code", f"code {pack.code!r} does not match the file name {path.name!r}",
                          f"set `code: {path.stem}` or rename the file")
    return pack
