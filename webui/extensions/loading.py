"""Finding extensions (`<root>/NAME/script.py`) and importing them, checked against
the extension API: its version, and the shape of every hook it defines.

Each extension folder becomes a package `hearth_extensions.NAME`, so a script.py can
import its own modules (`from .chunking import split_text`) without anything being
put on sys.path.
"""
from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webui.extensions.api import EXTENSION_API_VERSION, HOOKS

NAMESPACE = "hearth_extensions"
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass
class Extension:
    name: str
    folder: Path
    module: types.ModuleType | None = None  # None when it could not be imported
    title: str = ""
    description: str = ""
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    enabled: bool = False
    ready: bool = False  # setup() has run since it was last switched on
    error: str | None = None  # the latest fault, one line

    @property
    def loadable(self) -> bool:
        return self.module is not None

    @property
    def status(self) -> str:
        if not self.loadable:
            return f"cannot be loaded: {self.error}"
        if self.enabled:
            return "on"
        return f"off after an error: {self.error}" if self.error else "off"


def find_extensions(roots: list[Path]) -> list[tuple[str, Path]]:
    """(name, folder) for every `NAME/script.py` under the roots; the first root
    that has a name wins."""
    seen: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.name in seen or not (folder / "script.py").is_file():
                continue
            if not _VALID_NAME.match(folder.name):
                continue  # "my extension (old)" and the like: not an importable name
            seen[folder.name] = folder
    return list(seen.items())


def module_name(name: str) -> str:
    return f"{NAMESPACE}.{name.replace('-', '_')}"


def import_script(name: str, folder: Path) -> types.ModuleType:
    """Import folder/script.py as hearth_extensions.NAME.script (raises what the
    extension's code raises)."""
    if NAMESPACE not in sys.modules:
        root = types.ModuleType(NAMESPACE)
        root.__path__ = []  # a namespace: the packages below are added one by one
        sys.modules[NAMESPACE] = root
    package_name = module_name(name)
    package = types.ModuleType(package_name)
    package.__path__ = [str(folder)]
    package.__file__ = None
    sys.modules[package_name] = package
    # A fresh import every time: a re-discovered extension runs its current code.
    for key in [k for k in sys.modules if k.startswith(package_name + ".")]:
        del sys.modules[key]
    spec = importlib.util.spec_from_file_location(f"{package_name}.script", folder / "script.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def check_module(ext: Extension, module: types.ModuleType) -> str | None:
    """Fill in ext from the module; a one-line reason if it breaks the API."""
    version = getattr(module, "EXTENSION_API", None)
    if version is None:
        return f"script.py does not say which extension API it uses (add EXTENSION_API = {EXTENSION_API_VERSION})"
    if version != EXTENSION_API_VERSION:
        return (f"written for extension API {version!r}; this Hearth provides version "
                f"{EXTENSION_API_VERSION}")
    hooks = {}
    for hook, spec in HOOKS.items():
        fn = getattr(module, hook, None)
        if fn is None:
            continue
        if not callable(fn):
            return f"{hook} is not a function"
        try:
            inspect.signature(fn).bind(*spec.params)
        except TypeError:
            return f"{hook} must take ({', '.join(spec.params)})"
        except ValueError:  # a builtin without a signature: trust it
            pass
        hooks[hook] = fn
    ext.hooks = hooks
    ext.title = str(getattr(module, "TITLE", "") or ext.name.replace("_", " ").replace("-", " ").title())
    doc = (module.__doc__ or "").strip().splitlines()
    ext.description = str(getattr(module, "DESCRIPTION", "") or (doc[0] if doc else ""))
    return None
