"""The miniature-world judge as an evaluation metric.

Each generated image is compared with its suite's reference image, a render of the scene the caption
describes: the score is the share of images whose judged attributes equal the reference's. The judge
reads renders with an accuracy of about 1.0, so this is the accuracy against the caption.
"""

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from polyiap.errors import PolyiapError


def find_judge(folder: Path | None) -> Path:
    """Return the judge folder to use: ``folder``, or the one shipped with polyiap."""
    from polyiap.miniworld import JUDGE_FOLDER
    from polyiap.miniworld.judge import JUDGE_WEIGHTS

    folder = Path(folder) if folder else JUDGE_FOLDER
    if not (folder / JUDGE_WEIGHTS).is_file():
        raise PolyiapError(f"no judge in {folder} (missing {JUDGE_WEIGHTS}); train one with `polyiap miniworld "
                           "train-judge --output DIR` and pass --judge DIR")
    return folder


def judge_sha256(folder: Path) -> str:
    from polyiap.miniworld.judge import JUDGE_WEIGHTS

    return hashlib.sha256((folder / JUDGE_WEIGHTS).read_bytes()).hexdigest()


def judged_agreement(folder: Path, images: list[Path], references: list[Path]) -> dict[str, float]:
    """Return the share of images whose judged attributes all equal the reference's, and per attribute."""
    from polyiap.miniworld.judge import Judge
    from polyiap.miniworld.metrics import judged_attributes

    judge = Judge.load(folder)
    generated = judged_attributes(judge, _load(images))
    expected = judged_attributes(judge, _load(references))
    same = {name: (generated[name] == expected[name]) for name in generated}
    scores = {f"judge_{name}": hits.float().mean().item() for name, hits in same.items()}
    all_same = np.logical_and.reduce([hits.numpy() for hits in same.values()])
    return {"judge_all": float(all_same.mean()), **scores}


def _load(paths: list[Path]) -> np.ndarray:
    """Read images as uint8 (N, 32, 32, 3), resized to the judge's input size when they differ."""
    from polyiap.miniworld.scenes import RESOLUTION

    arrays = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (RESOLUTION, RESOLUTION):
                image = image.resize((RESOLUTION, RESOLUTION), Image.Resampling.BOX)
            arrays.append(np.asarray(image))
    return np.stack(arrays)
