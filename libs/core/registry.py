"""A name → class registry, used only where YAML chooses an implementation by name."""
from typing import Any, Callable


class MissingKeyError(KeyError, ValueError):
    """A name or id that is not there: a KeyError for lookup code, and a ValueError so that
    train.py / eval.py print it as one `error: ...` line. str() is the plain message (a bare
    KeyError would print it in quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(dict):
    """Maps a name (the YAML `type`) to a class or factory."""

    def __init__(self, kind: str, config_key: str = ""):
        super().__init__()
        self.kind = kind
        self.config_key = config_key  # the config entry that names the implementation, for messages

    def register(self, name: str) -> Callable:
        def deco(obj):
            if name in self:
                raise KeyError(f"{self.kind} '{name}' registered twice")
            self[name] = obj
            return obj

        return deco

    def build(self, name: str, **kwargs: Any):
        if name not in self:
            where = f"{self.config_key}: " if self.config_key else ""
            raise MissingKeyError(f"{where}unknown {self.kind} '{name}'; available: {sorted(self)}")
        return self[name](**kwargs)
