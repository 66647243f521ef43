"""Exceptions that the command line turns into one-line messages with exit code 2."""


class PolyiapError(Exception):
    """An error caused by the user's input or environment, with a message that explains how to fix it."""


class ConfigError(PolyiapError):
    """An invalid language pack or recipe: names the file, the field and the fix."""

    def __init__(self, file: str, field: str, reason: str, fix: str):
        self.file, self.field, self.reason, self.fix = file, field, reason, fix
        super().__init__(f"{file}: {field}: {reason}. Fix: {fix}")


class ModelNotAvailableError(PolyiapError):
    """A model named by a recipe is neither a local folder nor reachable on the hub."""


class IncompatibleModelsError(PolyiapError):
    """A student tokenizer, student encoder and backbone that cannot work together."""


class DataError(PolyiapError):
    """Training data that is missing or unreadable."""


class UnsupportedModelError(PolyiapError):
    """A model folder of a kind that no backbone family loads."""
