"""Named registries (scorers, selectors, mixture solvers). Unknown names list the valid ones."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from assay.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, where: str = "") -> T:
        try:
            return self._items[name]
        except KeyError as e:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            loc = f" at {where}" if where else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{loc}{hint}; valid: {', '.join(sorted(self._items))}"
            ) from e

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
