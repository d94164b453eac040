"""Name -> backend. Registering imports only the backend's thin module; its heavy
library (llama_cpp, torch, ...) is imported inside `load`, so listing loaders,
`hearth --help` and the UI's first paint stay fast."""
from __future__ import annotations

import re
from pathlib import Path

from loaders.base import Loader, LoadError

_LOADERS: dict[str, Loader] = {}


def register(loader_cls: type) -> type:
    instance = loader_cls()
    if instance.name in _LOADERS:
        raise ValueError(f"loader {instance.name!r} is registered twice")
    _LOADERS[instance.name] = instance
    return loader_cls


def names() -> list[str]:
    return list(_LOADERS)


def get(name: str) -> Loader:
    try:
        return _LOADERS[name]
    except KeyError:
        raise LoadError(f"unknown loader {name!r}; choose one of: {', '.join(_LOADERS)}") from None


def is_url(target: str | Path) -> bool:
    """True for "http://host:port/..." (a remote engine), which must stay a string:
    Path() would fold its "//"."""
    return isinstance(target, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", target) is not None


def opener_of(fmt) -> str | None:
    """The loader that opens checkpoints of format `fmt` (a loaders.formats
    CheckpointFormat), by the `formats` each loader declares."""
    for name, loader in _LOADERS.items():
        if fmt in getattr(loader, "formats", ()):
            return name
    return None


def detect(path: str | Path) -> str | None:
    """The loader that should open `path` (a file, a folder or a URL), or None."""
    p = path if is_url(path) else Path(path)
    for name, loader in _LOADERS.items():
        try:
            if loader.can_load(p):
                return name
        except OSError:
            continue
    return None
