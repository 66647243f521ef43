"""One place that turns library errors into one-line messages and exit codes."""

import functools
import logging
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from polyiap.errors import PolyiapError

stderr = Console(stderr=True)

EXIT_USAGE = 2


def handle_errors(command):
    """Run ``command``; a `PolyiapError` prints one line and exits with 2 (a traceback with POLYIAP_DEBUG=1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PolyiapError as error:
            if os.environ.get("POLYIAP_DEBUG"):
                logging.getLogger("polyiap").exception("failed")
            stderr.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            stderr.print("interrupted; the last complete checkpoint is intact (continue with --resume latest)")
            sys.exit(130)

    return wrapper
