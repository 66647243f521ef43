"""Recipes: what to train (backbone, student, data, loss, schedule), from ``recipes/*.yaml``."""

from pathlib import Path

from polyiap.assets import asset_dir
from polyiap.config import apply_overrides, read_yaml, validate
from polyiap.errors import ConfigError
from polyiap.recipes.schema import Recipe

__all__ = ["Recipe", "load_recipe", "list_recipes", "recipe_path"]


def _blame_override(error: ConfigError, overrides: list[str], data: str | None,
                    related: tuple[str, ...] = ()) -> ConfigError:
    """Point an error at the ``--set`` or ``--data`` option that caused it rather than at the recipe file.

    ``related`` lists other keys whose override makes ``error.field`` invalid.
    """
    options = [(o.partition("=")[0].strip(), f"--set {o}") for o in overrides]
    if data is not None:
        options.append(("data.source", f"--data {data}"))
    for key, option in reversed(options):
        if error.field == key or error.field.startswith(key + ".") or key in related:
            fix = error.fix.replace("remove it", "correct the option")
            return ConfigError(f"{option} (recipe {error.file})", error.field, error.reason, fix)
    return error


def recipes_dir() -> Path:
    return asset_dir("recipes")


def list_recipes() -> list[str]:
    """Return the names of the shipped recipes (files starting with ``_`` are shared bases)."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml") if not p.name.startswith("_"))


def recipe_path(name_or_path: str) -> Path:
    """Return the file of a shipped recipe name, or ``name_or_path`` itself when it names a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    path = recipes_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(name_or_path, "recipe", f"no recipe {name_or_path!r}",
                          f"use one of: {', '.join(list_recipes())}, or pass the path of a recipe file")
    return path


def load_recipe(name_or_path: str, overrides: list[str] = (), data: str | None = None) -> Recipe:
    """Load a recipe, apply ``--set`` overrides and ``--data``, and make data paths absolute.

    A relative ``data.source`` in the file is relative to the recipe file; one given with ``--data`` or
    ``--set`` is relative to the working directory. A ``miniworld://`` source is rendered into the cache
    folder and replaced by the path of its triplet file.
    """
    path = recipe_path(name_or_path)
    raw = read_yaml(path, (recipes_dir(),))
    file_source = (raw.get("data") or {}).get("source")
    raw = apply_overrides(raw, list(overrides), str(path))
    if data is not None:
        raw = apply_overrides(raw, [f"data.source={data}"], str(path))
    try:
        recipe = validate(Recipe, raw, str(path))
    except ConfigError as error:
        raise _blame_override(error, list(overrides), data) from None
    if recipe.samples.unconditional == "student" and recipe.data.empty_prompt_rate == 0:
        error = ConfigError(str(path), "samples.unconditional",
                            "`student` needs a student that learned the empty prompt, but data.empty_prompt_rate is 0",
                            "set data.empty_prompt_rate above 0 (0.1 is common) or samples.unconditional to teacher")
        raise _blame_override(error, list(overrides), data, related=("data.empty_prompt_rate",))

    source = recipe.data.source
    if source is not None and source.startswith("miniworld://"):
        recipe.data.source = str(_render_miniworld(source))
    elif source is not None:
        base = path.parent if source == file_source and data is None else Path.cwd()
        recipe.data.source = str((base / source).resolve()) if "://" not in source else source
    return recipe


def _render_miniworld(source: str) -> Path:
    """Render a miniature-world source into the polyiap cache folder and return its triplet file."""
    from polyiap.backbones.tiny import cache_root
    from polyiap.miniworld.data import materialize

    return materialize(source, cache_root())
