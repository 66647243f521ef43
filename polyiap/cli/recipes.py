"""``polyiap recipes``: list the shipped recipes."""

import typer
from rich.console import Console
from rich.table import Table

from polyiap.cli.errors import handle_errors
from polyiap.recipes import list_recipes, load_recipe, recipe_path

app = typer.Typer(help="Training recipes (recipes/*.yaml).", no_args_is_help=True)
console = Console()


@app.command("list")
@handle_errors
def list_command() -> None:
    """List the shipped recipes."""
    table = Table("name", "backbone", "student", "steps", "batch", "lr", "description")
    for name in list_recipes():
        recipe = load_recipe(name)
        table.add_row(name, f"{recipe.backbone.family}: {recipe.backbone.source or '(built in)'}", recipe.student.init,
                      str(recipe.train.max_steps), str(recipe.train.batch_size), f"{recipe.train.lr:g}",
                      recipe.description)
    console.print(table)


@app.command("show")
@handle_errors
def show_command(name: str) -> None:
    """Print a recipe with every default filled in."""
    import yaml

    # Plain output, not rich: rich wraps long lines, which would break the YAML when it is saved to a file.
    typer.echo(f"# {recipe_path(name)}")
    typer.echo(yaml.safe_dump(load_recipe(name).model_dump(), sort_keys=False, allow_unicode=True), nl=False)
