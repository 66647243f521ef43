"""``polyiap backbones``: the supported model families."""

import typer
from rich.console import Console
from rich.table import Column, Table

from polyiap.cli.errors import handle_errors

app = typer.Typer(help="Backbone families (the frozen English models a student is trained for).",
                  no_args_is_help=True)
console = Console()


@app.command("list")
@handle_errors
def list_command() -> None:
    """List each family with the context width, pooled width and cross-attention layers of its configuration."""
    from polyiap.backbones.families import list_families

    table = Table("family", Column("configuration of", overflow="fold"), "context width", "pooled width",
                  "cross-attention layers")
    for info in list_families():
        table.add_row(info.family, info.checkpoint or "-", _number(info.context_dim), _number(info.pooled_dim),
                      _number(info.cross_attention_layers))
    console.print(table)
    for info in list_families():
        console.print(f"[bold]{info.family}[/]: {info.description}", highlight=False)
    console.print("`auto` as backbone.family picks the family from the source folder's model_index.json.")


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)
