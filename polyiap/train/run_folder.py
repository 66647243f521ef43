"""The run folder: ``config.yaml``, ``metrics.jsonl``, ``loss.png``, ``checkpoints/``, ``student/``, ``samples/``.

Every file that a crash could leave half written (checkpoints, the final student, plots) is written to
a temporary name in the same folder and renamed into place.
"""

import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml

from polyiap.errors import PolyiapError

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
STATE_FILE = "trainer_state.json"


class RunFolder:
    """Paths and atomic writes of one training run."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.metrics_file = self.root / "metrics.jsonl"
        self.config_file = self.root / "config.yaml"
        self.student_dir = self.root / "student"
        self.samples_dir = self.root / "samples"

    def check_new(self) -> None:
        """Raise when the folder already contains a run, so that a new run never overwrites it."""
        if self.config_file.exists() or self.checkpoints.exists():
            raise PolyiapError(f"output folder {str(self.root)!r} already contains a run; continue it with "
                               "`--resume latest` or choose another --output")

    def prepare_new(self) -> None:
        """Create the folder for a fresh run."""
        self.check_new()
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict) -> None:
        atomic_write_text(self.config_file, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict:
        return yaml.safe_load(self.config_file.read_text(encoding="utf-8"))

    def append_metrics(self, record: dict) -> None:
        with self.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics_file.exists():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, after_step: int) -> None:
        """Drop records past ``after_step``: a resumed run writes them again."""
        records = [r for r in self.read_metrics() if r["step"] <= after_step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in records))

    def checkpoint_dirs(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.iterdir()
                 if p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).is_file()]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))

    def find_checkpoint(self, resume: str) -> Path:
        """Return the checkpoint that ``--resume`` names: ``latest`` or a checkpoint folder."""
        if resume != "latest":
            path = Path(resume)
            if not (path / STATE_FILE).is_file():
                raise PolyiapError(f"--resume {resume!r} is not a checkpoint folder (no {STATE_FILE}); "
                                   f"use `latest` or a folder under {self.checkpoints}")
            return path
        found = self.checkpoint_dirs()
        if not found:
            raise PolyiapError(f"--resume latest: no complete checkpoint in {self.checkpoints}; start the run "
                               "without --resume")
        return found[-1]


def atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def replace_dir(staging: Path, final: Path) -> None:
    """Move a fully written ``staging`` folder to ``final``, replacing an older one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
