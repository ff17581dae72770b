"""A name → class registry, used only where YAML chooses an implementation by name."""
from typing import Any, Callable


class Registry(dict):
    """Maps a name (the YAML `type`) to a class or factory."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable:
        def deco(obj):
            if name in self:
                raise KeyError(f"{self.kind} '{name}' registered twice")
            self[name] = obj
            return obj

        return deco

    def build(self, name: str, **kwargs: Any):
        if name not in self:
            raise KeyError(f"unknown {self.kind} '{name}'; available: {sorted(self)}")
        return self[name](**kwargs)
