"""A generic name-to-object registry with decorator registration and "did you mean" errors."""

import difflib
from typing import Callable, Generic, TypeVar

from polyiap.errors import PolyiapError

T = TypeVar("T")


class UnknownNameError(PolyiapError, KeyError):
    """A name that is not registered; the message lists close matches and every registered name."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to registered objects (classes or factories) of one kind.

    Args:
        kind: what the registry holds, used in messages (for example ``"backbone"``).
        base: when given, every registered class must be a subclass of it.
    """

    def __init__(self, kind: str, base: type | None = None):
        self.kind = kind
        self.base = base
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its target under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self._entries[name]!r}")
            if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
                raise TypeError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}, got {obj!r}")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered under ``name`` or raise an error that suggests close names."""
        if name in self._entries:
            return self._entries[name]
        available = ", ".join(self.names()) or "none"
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Available: {available}.")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def __contains__(self, name: str) -> bool:
        return name in self._entries
