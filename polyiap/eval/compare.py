"""Rows of a Table-1-style comparison from several evaluation folders."""

import json
from dataclasses import dataclass
from pathlib import Path

from polyiap.errors import PolyiapError
from polyiap.eval.runner import METRICS_FILE, differences

# Parts of metrics.json that make up the protocol; the model is what a comparison varies.
PROTOCOL_SECTIONS = ("suite", "sampling", "scorers", "versions")
# Scorer fields that name where a file was, not what it was.
LOCATION_FIELDS = ("path", "source")


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
    protocol: dict


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
                        record["comparable_to_published"], record["sampling"], _protocol(record)))
    return rows


def _protocol(record: dict) -> dict:
    protocol = {section: record.get(section, {}) for section in PROTOCOL_SECTIONS}
    protocol["suite"] = {k: v for k, v in protocol["suite"].items() if k != "images"}
    protocol["scorers"] = {name: {k: v for k, v in scorer.items() if k not in LOCATION_FIELDS}
                           for name, scorer in protocol["scorers"].items()}
    return protocol


def protocol_differences(rows: list[Row]) -> list[str]:
    """Return one line per protocol field on which any row differs from the first."""
    fields: dict[str, list] = {}
    for row in rows[1:]:
        for key in differences(rows[0].protocol, row.protocol):
            fields.setdefault(key, [])
    lines = []
    for key in fields:
        values = [_lookup(row.protocol, key) for row in rows]
        lines.append(f"{key} differs: {', '.join(map(str, values))}")
    return lines


def _lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
