"""Progress reporting from the training loop: the command line renders it, and the library never prints."""

from typing import Protocol


class ProgressCallback(Protocol):
    def on_start(self, total_steps: int, start_step: int) -> None: ...

    def on_step(self, step: int, metrics: dict) -> None: ...

    def on_message(self, message: str) -> None: ...

    def on_end(self) -> None: ...


class SilentProgress:
    """A `ProgressCallback` that ignores everything."""

    def on_start(self, total_steps: int, start_step: int) -> None:
        pass

    def on_step(self, step: int, metrics: dict) -> None:
        pass

    def on_message(self, message: str) -> None:
        pass

    def on_end(self) -> None:
        pass
