"""Training: one Accelerate loop, the run folder, checkpoints and resume."""

from polyiap.train.loop import transfer
from polyiap.train.progress import ProgressCallback, SilentProgress
from polyiap.train.run_folder import RunFolder

__all__ = ["ProgressCallback", "RunFolder", "SilentProgress", "transfer"]
