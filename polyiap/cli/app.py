"""The ``polyiap`` command: wires the command groups together."""

import logging
import os

import typer
from rich.logging import RichHandler

from polyiap.cli import backbones, cache
from polyiap.cli import eval as eval_cli
from polyiap.cli import miniworld, packs, recipes
from polyiap.cli.export import export_command
from polyiap.cli.generate import generate_command
from polyiap.cli.prepare import prepare_command
from polyiap.cli.transfer import console, transfer_command

app = typer.Typer(help="Transfer an English text-to-image model to another language (images as pivots).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(packs.app, name="packs")
app.add_typer(recipes.app, name="recipes")
app.add_typer(eval_cli.app, name="eval")
app.add_typer(cache.app, name="cache")
app.add_typer(backbones.app, name="backbones")
app.add_typer(miniworld.app, name="miniworld")
app.command("prepare")(prepare_command)
app.command("transfer")(transfer_command)
app.command("generate")(generate_command)
app.command("export")(export_command)


@app.callback()
def configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="log debug messages")) -> None:
    level = logging.DEBUG if verbose or os.environ.get("POLYIAP_DEBUG") else logging.INFO
    if os.environ.get("RANK", "0") != "0":  # under torchrun or accelerate launch, only rank 0 reports
        level = logging.WARNING
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_time=False, show_path=False)])
    logging.getLogger("polyiap").setLevel(level)
    _quiet_libraries()


def _quiet_libraries() -> None:
    """Hide third-party progress bars and advisory warnings; polyiap renders its own progress."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def main() -> None:
    app()
