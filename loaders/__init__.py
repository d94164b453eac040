"""Backends behind one interface. Imports nothing from webui."""
from loaders import llamacpp  # noqa: F401  (registers itself)
from loaders import remote  # noqa: F401  (registers itself)
from loaders.base import GenerationError, LoadError, Loader, Model
from loaders.fields import SettingError
from loaders.params import GenerationParams
from loaders.registry import detect, get, is_url, names

__all__ = ["GenerationError", "GenerationParams", "LoadError", "Loader", "Model",
           "SettingError", "detect", "get", "is_url", "names"]
