"""Resolve a model name to a local folder without surprise downloads.

A name is a local folder, a hub id already in the local Hugging Face cache, or a hub id downloaded only
when the hub is reachable. With ``HF_HUB_OFFLINE=1``, or when the hub does not respond within a few
seconds, a missing model fails at once with a message that explains how to use a local folder instead.
"""

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from polyiap.errors import ModelNotAvailableError

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 3.0


def resolve_model_source(source: str, role: str, option: str, revision: str | None = None) -> Path:
    """Return a local folder for ``source`` (a folder or a hub id).

    Args:
        source: local folder or hub id such as ``CompVis/stable-diffusion-v1-4``.
        role: what the model is for, used in messages (``"backbone"``).
        option: the recipe key that names it, used in the fix (``"backbone.source"``).
        revision: hub revision (branch, tag or commit).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if _looks_like_path(source):
        raise ModelNotAvailableError(
            f"{role} folder {source!r} not found; check the path given in {option}")

    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure here means "not in the local cache"
        pass

    where = f"{option} DIR" if option.startswith("--") else f"--set {option}=DIR"
    fix = (f"download it on a machine with network access (`hf download {source} --local-dir DIR`), "
           f"copy DIR here and pass `{where}`")
    if _offline_requested():
        raise ModelNotAvailableError(
            f"{role} {source!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {fix}")
    if not _hub_reachable():
        raise ModelNotAvailableError(
            f"{role} {source!r} is not in the local Hugging Face cache and the hub ({_hub_host()}) "
            f"cannot be reached; {fix}")
    logger.info("downloading %s %s from the hub", role, source)
    return Path(snapshot_download(source, revision=revision))


def _looks_like_path(source: str) -> bool:
    # Hub ids are `name` or `owner/name`; anything else is meant as a path.
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def _offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def _hub_reachable() -> bool:
    """Open one TCP connection to the hub (no HTTP request, no retries)."""
    try:
        with socket.create_connection((_hub_host(), 443), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False
