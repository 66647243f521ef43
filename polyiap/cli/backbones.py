"""``polyiap backbones``: the supported model families."""

import typer
from rich.console import Console
from rich.table import Table

from polyiap.cli.errors import handle_errors

app = typer.Typer(help="Backbone families (the frozen English models a student is trained for).",
                  no_args_is_help=True)
console = Console()


@app.command("list")
@handle_errors
def list_command() -> None:
    """List each family with the context width, pooled width and cross-attention layers of its configuration."""
    from polyiap.backbones.families import list_families

    table = Table("family", "configuration of", "context width", "pooled width", "cross-attention layers",
                  "description")
    for info in list_families():
        table.add_row(info.family, info.checkpoint or "-", _number(info.context_dim), _number(info.pooled_dim),
                      _number(info.cross_attention_layers), info.description)
    console.print(table)
    console.print("`auto` as backbone.family picks the family from the source folder's model_index.json.")


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)
