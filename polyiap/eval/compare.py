"""Rows of a Table-1-style comparison from several evaluation folders."""

import json
from dataclasses import dataclass
from pathlib import Path

from polyiap.errors import PolyiapError
from polyiap.eval.runner import METRICS_FILE

# Sampling fields that must agree for two rows to be compared under one protocol.
PROTOCOL_FIELDS = ("scheduler", "steps", "guidance", "resolution", "seed")


@dataclass
class Row:
    folder: Path
    model: str
    suite: str
    count: int
    fid: float | None
    clip_score: float | None
    comparable: bool
    sampling: dict


def load_rows(folders: list[Path]) -> list[Row]:
    rows = []
    for folder in folders:
        path = folder / METRICS_FILE
        if not path.is_file():
            raise PolyiapError(f"{folder} has no {METRICS_FILE}; pass folders written by `polyiap eval --output`")
        record = json.loads(path.read_text(encoding="utf-8"))
        model = record["model"]
        name = Path(model["path"]).name if model.get("path") else model["kind"]
        rows.append(Row(folder, name, record["suite"]["name"], record["suite"]["count"],
                        record["metrics"].get("fid"), record["metrics"].get("clip_score"),
                        record["comparable_to_published"], record["sampling"]))
    return rows


def protocol_differences(rows: list[Row]) -> list[str]:
    """Return one line per field on which the rows' protocols differ."""
    lines = []
    for name, values in (("suite", [r.suite for r in rows]), ("count", [r.count for r in rows])):
        if len(set(values)) > 1:
            lines.append(f"{name} differs: {', '.join(map(str, values))}")
    for name in PROTOCOL_FIELDS:
        values = [r.sampling.get(name) for r in rows]
        if len(set(map(str, values))) > 1:
            lines.append(f"{name} differs: {', '.join(map(str, values))}")
    return lines
