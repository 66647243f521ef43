"""WebDataset shards: tar files whose members ``KEY.EXT`` group into one sample per key.

Reading and writing use the standard ``tarfile`` module. A shard is written under a temporary name and
renamed when complete, so a killed job never leaves a half-written shard under its final name.
"""

import io
import logging
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def split_member_name(name: str) -> tuple[str, str]:
    """Split ``dir/000123.en.txt`` into the key ``dir/000123`` and the extension ``en.txt``."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    key = f"{folder}/{stem}" if folder else stem
    return key, extension.lower()


class TarSamples:
    """The samples of one shard, read in order; ``error`` is set when the shard ends early.

    Each sample is a dict of extension to bytes plus ``__key__``. A truncated or corrupt shard yields
    the samples before the damage and stops, instead of raising.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.error: str | None = None

    def __iter__(self) -> Iterator[dict]:
        sample: dict = {}
        try:
            with tarfile.open(self.path, "r|*") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    key, extension = split_member_name(member.name)
                    if sample and sample["__key__"] != key:
                        yield sample
                        sample = {}
                    handle = archive.extractfile(member)
                    sample.setdefault("__key__", key)
                    sample[extension] = handle.read() if handle is not None else b""
        except (tarfile.TarError, EOFError, OSError, ValueError) as error:
            self.error = f"{type(error).__name__}: {error}"
            logger.warning("shard %s ends early (%s); keeping the samples before the damage", self.path, self.error)
            return
        if sample:
            yield sample


class ShardWriter:
    """Writes one tar shard under a temporary name and renames it to ``path`` on `close`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.archive = tarfile.open(self.partial, "w")
        self.count = 0

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Add one sample: ``members`` maps an extension (``jpg``, ``en.txt``, ``json``) to its bytes."""
        for extension, data in members.items():
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            self.archive.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> None:
        self.archive.close()
        with self.partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        self.archive.close()
        self.partial.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def find_shards(folder: Path) -> list[Path]:
    """Return the ``*.tar`` files under ``folder``, sorted by path (hidden partial files excluded)."""
    return sorted(p for p in Path(folder).rglob("*.tar") if not p.name.startswith("."))
