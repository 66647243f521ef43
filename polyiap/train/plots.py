"""Pictures of a run: the loss curves."""

import os
from pathlib import Path


def plot_losses(records: list[dict], path: Path) -> None:
    """Write training and held-out loss against step to ``path`` (PNG), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    heldout = [(r["step"], r["heldout_pivot_loss"]) for r in records if "heldout_pivot_loss" in r]
    baseline = [r["heldout_mean_embedding_loss"] for r in records if "heldout_mean_embedding_loss" in r]
    if train:
        axis.plot(*zip(*train), label="train loss", alpha=0.7)
    if heldout:
        axis.plot(*zip(*heldout), marker="o", label="held-out pivot loss")
    if baseline:
        axis.axhline(baseline[-1], linestyle="--", color="grey", label="held-out, mean teacher embedding")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    temporary = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(temporary)
    plt.close(figure)
    os.replace(temporary, path)
