"""``polyiap packs``: list, validate and start language packs."""

import re
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from polyiap.cli.errors import handle_errors
from polyiap.errors import ConfigError
from polyiap.packs import list_packs, load_pack, pack_path
from polyiap.packs.skeleton import pack_skeleton

app = typer.Typer(help="Language packs (languages/*.yaml).", no_args_is_help=True)
console = Console()


@app.command("list")
@handle_errors
def list_command() -> None:
    """List the shipped language packs."""
    table = Table("code", "name", "reference recipe", "student candidates", "file")
    for code in list_packs():
        pack = load_pack(code)
        table.add_row(pack.code, f"{pack.name} {pack.native_name}".strip(), pack.reference_recipe,
                      ", ".join(c.name for c in pack.student_candidates), str(pack_path(code)))
    console.print(table)


@app.command("validate")
@handle_errors
def validate_command(packs: list[str] = typer.Argument(None, help="pack codes or YAML paths; default: all shipped")) -> None:
    """Check language packs against the schema; exit code 2 names the file, field and fix of the first error."""
    for code in packs or list_packs():
        pack = load_pack(code)
        if pack.reference_recipe:
            _check_recipe_exists(pack.reference_recipe, pack_path(code))
        typer.echo(f"ok {pack.code} ({pack_path(code)})")


def _check_recipe_exists(name: str, file: Path) -> None:
    from polyiap.recipes import recipe_path

    try:
        recipe_path(name)
    except ConfigError as error:
        raise ConfigError(str(file), "reference_recipe", error.reason, error.fix) from None


@app.command("new")
@handle_errors
def new_command(
    code: str = typer.Argument(..., help="language code, e.g. sw or pt-BR"),
    output: Path = typer.Option(None, "--output", "-o", help="file to write; default: CODE.yaml in the current folder"),
) -> None:
    """Write a commented pack skeleton for CODE; fill the marked fields, then run `polyiap packs validate`."""
    from polyiap.packs.schema import LanguagePack

    pattern = LanguagePack.model_fields["code"].metadata[0].pattern
    if not re.match(pattern, code):
        raise ConfigError(code, "code", f"{code!r} is not a language code",
                          "use an ISO 639 code in lower case, optionally with a region or script: ja, sw, pt-BR")
    path = output or Path(f"{code}.yaml")
    if path.exists():
        raise ConfigError(str(path), "(file)", "the file already exists", "choose another --output or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pack_skeleton(code), encoding="utf-8")
    typer.echo(f"wrote {path}; fill every <FILL IN: ...> value, then run `polyiap packs validate {path}`")
