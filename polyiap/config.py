"""YAML files with ``include:``, command-line overrides and schema validation shared by packs and recipes."""

import difflib
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from polyiap.errors import ConfigError

SchemaT = TypeVar("SchemaT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every schema: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def read_yaml(path: Path, search_dirs: tuple[Path, ...] = (), _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, resolving ``include:`` (a file name or a list of them).

    An included name is looked up next to the including file first, then in ``search_dirs`` (the shipped
    packs or recipes), so a pack written outside the repository can still include ``_base.yaml``.
    Included files are merged first, in order, and the including file's keys win. Nested mappings are
    merged key by key.
    """
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(p.name for p in (*_seen, path))
        raise ConfigError(str(path), "include", f"circular include ({chain})", "remove one of the includes")
    if not path.is_file():
        raise ConfigError(str(path), "(file)", "file not found", "check the path or the name")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(str(path), "(file)", f"invalid YAML: {error}".replace("\n", " "), "fix the YAML syntax") from error
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(str(path), "(file)", f"expected a mapping at the top level, got {type(data).__name__}",
                          "write the file as `key: value` lines")

    includes = data.pop("include", [])
    includes = [includes] if isinstance(includes, str) else includes
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(str(path), "include", f"expected a file name or a list of file names, got {includes!r}",
                          "write `include: _base.yaml`")
    merged: dict[str, Any] = {}
    for name in includes:
        candidates = [path.parent / name, *(folder / name for folder in search_dirs)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            looked = ", ".join(str(c.parent) for c in candidates)
            raise ConfigError(str(path), "include", f"included file {name!r} not found (looked in {looked})",
                              f"put {name} next to {path.name} or remove the include")
        merged = deep_merge(merged, read_yaml(found, search_dirs, (*_seen, path)))
    return deep_merge(merged, data)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``update``, merging nested mappings instead of replacing them."""
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def apply_overrides(data: dict[str, Any], overrides: list[str], file: str) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are parsed as YAML scalars (``1e-4``, ``true``, ``null``)."""
    data = dict(data)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(file, override, "an override must look like `section.key=value`",
                              "write for example `--set train.lr=1e-4`")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        data = deep_merge(data, _nest(key.strip().split("."), value))
    return data


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(keys):
        value = {key: value}
    return value


def validate(schema: type[SchemaT], data: dict[str, Any], file: str) -> SchemaT:
    """Validate ``data`` against ``schema``, raising a `ConfigError` that names the first bad field."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(file, field, _reason(first), _fix(schema, first)) from None


def _reason(error: dict[str, Any]) -> str:
    if error["type"] in ("value_error", "assertion_error"):
        return str(error["ctx"].get("error", error["msg"])) if error.get("ctx") else error["msg"]
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return f"{error['msg']} (got {error.get('input')!r})"


def _fix(schema: type[BaseModel], error: dict[str, Any]) -> str:
    parent = _model_at(schema, error["loc"][:-1])
    name = str(error["loc"][-1]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        allowed = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{hint}remove it or use one of: {', '.join(allowed) or 'see the documentation'}"
    if error["type"] == "missing":
        return "add the key"
    if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "use a value " + error["msg"].removeprefix("Input should be ")
    field = parent.model_fields.get(name) if parent else None
    if field is None:
        return "change the value as the reason says"
    return f"use {_describe(field.annotation)}"


def _describe(annotation: Any) -> str:
    """Describe a field type for an error message: ``a number``, ``one of: a, b``."""
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if get_origin(annotation) is Literal:
        return "one of: " + ", ".join(str(value) for value in get_args(annotation))
    if get_origin(annotation) in (Union, UnionType):
        return " or ".join(_describe(arg) for arg in get_args(annotation))
    return words.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _model_at(schema: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    model = schema
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model
