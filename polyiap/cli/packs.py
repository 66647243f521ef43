"""``polyiap packs``: list and validate language packs."""

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from polyiap.cli.errors import handle_errors
from polyiap.errors import ConfigError
from polyiap.packs import list_packs, load_pack, pack_path

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
