"""The judge: a small CNN that reads each attribute of a rendered scene, and its training."""

import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from polyiap.miniworld.scenes import ATTRIBUTES, Scene, all_scenes, render_batch

logger = logging.getLogger(__name__)

JUDGE_WEIGHTS = "judge.safetensors"
JUDGE_CONFIG = "judge.json"


class Judge(nn.Module):
    """Classify shape, colour, position and size of 32x32 scenes; ``features`` feeds the Fréchet distance."""

    feature_dim = 128

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
            nn.Flatten(), nn.Linear(64 * 16, self.feature_dim), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(self.feature_dim, len(values))
                                    for name, values in ATTRIBUTES.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Return (B, 128) features of images in [0, 1], (B, 3, 32, 32)."""
        return self.trunk(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(images)
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the predicted index of each attribute, (B,) per attribute."""
        return {name: logits.argmax(-1) for name, logits in self(images).items()}

    def save(self, folder: Path, metadata: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), folder / JUDGE_WEIGHTS)
        (folder / JUDGE_CONFIG).write_text(json.dumps({"attributes": ATTRIBUTES, **metadata}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "Judge":
        judge = cls()
        judge.load_state_dict(load_file(folder / JUDGE_WEIGHTS))
        return judge.eval()


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """Turn uint8 (N, H, W, 3) images into float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def labelled_batch(count: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Render ``count`` scenes drawn from every combination (held-out ones included) with their labels."""
    pool = all_scenes()
    scenes = [pool[i] for i in rng.integers(0, len(pool), size=count)]
    return images_to_tensor(render_batch(scenes, rng)), scene_labels(scenes)


def scene_labels(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    labels = [scene.labels() for scene in scenes]
    return {name: torch.tensor([label[name] for label in labels]) for name in ATTRIBUTES}


def train_judge(steps: int = 1500, batch_size: int = 128, seed: int = 0) -> Judge:
    """Train a judge on freshly rendered scenes, one new batch per step."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    judge = Judge()
    optimizer = torch.optim.Adam(judge.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for step in range(steps):
        images, labels = labelled_batch(batch_size, rng)
        logits = judge(images)
        loss = sum(nn.functional.cross_entropy(logits[name], labels[name]) for name in ATTRIBUTES)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0:
            logger.info("judge step %d: loss %.4f", step, loss.item())
    return judge.eval()


def judge_accuracy(judge: Judge, count: int = 2000, seed: int = 12345) -> dict[str, float]:
    """Return the judge's accuracy per attribute on ``count`` fresh renders."""
    images, labels = labelled_batch(count, np.random.default_rng(seed))
    predicted = judge.predict(images)
    return {name: (predicted[name] == labels[name]).float().mean().item() for name in ATTRIBUTES}
