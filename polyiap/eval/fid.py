"""FID computed by torch-fidelity (the tool of the IAP paper) on two lists of equally sized images."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from polyiap.errors import PolyiapError

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
# torch.hub names a weights file after the first hex digits of its SHA-256.
INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


@dataclass
class InceptionWeights:
    path: Path
    sha256: str

    @property
    def official(self) -> bool:
        return self.sha256.startswith(INCEPTION_SHA256_PREFIX)


def require_torch_fidelity():
    try:
        import torch_fidelity
    except ImportError as error:
        raise PolyiapError(
            f"FID needs torch-fidelity, which cannot be imported ({error}); install the eval extra: "
            "pip install torch==2.14.1 torchvision==0.29.1 && pip install 'polyiap[eval]' "
            "(see the README), or leave FID out with --metrics clip_score") from None
    return torch_fidelity


def find_inception_weights(path: Path | None) -> InceptionWeights:
    """Return the Inception weights given by ``path``, else those in torch-fidelity's cache."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    candidate = path if path is not None else cached
    if not candidate.is_file():
        where = f"--inception-weights {path}" if path is not None else f"torch-fidelity's cache ({cached})"
        raise PolyiapError(
            f"Inception weights for FID not found: {where} is not a file. Download {INCEPTION_URL} on a machine "
            f"with network access, copy it here and pass --inception-weights PATH (or place it at {cached})")
    _check_loadable(candidate)
    return InceptionWeights(candidate.resolve(), _sha256(candidate))


def _check_loadable(path: Path) -> None:
    """Build torch-fidelity's Inception network from ``path`` once, so a wrong file fails before generation."""
    require_torch_fidelity()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    except Exception as error:  # noqa: BLE001 - unpickling and state-dict errors have many types
        raise PolyiapError(f"{path} is not torch-fidelity Inception weights ({type(error).__name__}: "
                           f"{str(error)[:200]}); pass the file {INCEPTION_FILE} with --inception-weights") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ImageFiles(torch.utils.data.Dataset):
    """Images as the uint8 (3, H, W) tensors torch-fidelity reads; all must have the same size."""

    def __init__(self, files: list[Path]):
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            pixels = np.asarray(image.convert("RGB"))
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


def compute_fid(generated: list[Path], reference: list[Path], weights: InceptionWeights,
                batch_size: int = 32) -> float:
    """FID between two lists of image files (2048-d Inception pool features), computed by torch-fidelity."""
    torch_fidelity = require_torch_fidelity()
    if len(generated) < 2 or len(reference) < 2:
        raise PolyiapError(f"FID needs at least 2 images on each side, got {len(generated)} and {len(reference)}; "
                           "raise --limit")
    metrics = torch_fidelity.calculate_metrics(
        input1=ImageFiles(generated), input2=ImageFiles(reference), fid=True,
        feature_extractor_weights_path=str(weights.path), batch_size=batch_size, cuda=torch.cuda.is_available(),
        cache=False, verbose=False,
        save_cpu_ram=not torch.cuda.is_available())  # no loader worker processes on a CPU-only machine
    return float(metrics["frechet_inception_distance"])


def write_random_inception(path: Path, seed: int = 0) -> Path:
    """Save randomly initialised weights of torch-fidelity's full-size InceptionV3, for offline runs and tests.

    FID computed with them is not comparable to published figures, and `InceptionWeights.official` is False.
    """
    torch_fidelity = require_torch_fidelity()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):  # keep the random initialisation
            return None

    del torch_fidelity
    path.parent.mkdir(parents=True, exist_ok=True)
    empty = path.with_name(f".{path.name}.empty")
    torch.save({}, empty)
    torch.manual_seed(seed)
    network = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    empty.unlink()
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):  # keeps the signal alive through 94 layers, unlike the default
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(network.state_dict(), temporary)
    temporary.replace(path)
    return path
