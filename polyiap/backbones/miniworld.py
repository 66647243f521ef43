"""``miniworld``: the miniature world's trained teacher, shipped with polyiap, loaded as an SD 1.x folder."""

from pathlib import Path

from polyiap.backbones.registry import BACKBONES
from polyiap.backbones.sd1 import SD1Backbone
from polyiap.errors import ModelNotAvailableError
from polyiap.miniworld import TEACHER_FOLDER


@BACKBONES.register("miniworld")
class MiniworldBackbone(SD1Backbone):
    """The shipped miniature-world teacher; ``source`` may name another teacher trained the same way."""

    family = "miniworld"
    reference = None  # its sizes are those of the shipped folder, not of a real configuration

    @classmethod
    def load(cls, source: str | None, revision: str | None = None) -> "MiniworldBackbone":
        folder = Path(source) if source else TEACHER_FOLDER
        if not (folder / "model_index.json").is_file():
            raise ModelNotAvailableError(
                f"no miniature-world teacher in {folder}; train one with `polyiap miniworld train-teacher "
                f"--output DIR` and set backbone.source to DIR")
        return super().load(str(folder), revision)
