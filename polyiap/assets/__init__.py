"""Shipped language packs, recipes and demo data.

In an installed package the top-level ``languages/`` and ``recipes/`` folders of the repository are
copied to ``polyiap/assets/``. In a source checkout they are read where they are.
"""

from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def asset_dir(name: str) -> Path:
    """Return the folder of shipped assets called ``name`` (``languages`` or ``recipes``)."""
    installed = Path(__file__).resolve().parent / name
    if installed.is_dir():
        return installed
    return _PACKAGE_ROOT.parent / name
