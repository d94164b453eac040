"""Backends behind one interface. Imports nothing from webui."""
# ruff: noqa: I001  (the import order below is the registration order, which matters)
from loaders import llamacpp  # noqa: F401  (registers itself)
# Registration order is detection order (registry.detect returns the first match):
# GGUF -> llama.cpp, EXL2 -> ExLlamaV2, GPTQ -> GPTQ, plain safetensors -> Transformers.
from loaders import exllamav2, gptq, transformers  # noqa: F401,E402  (register themselves)
from loaders import remote  # noqa: F401  (registers itself)
from loaders.base import GenerationError, LoadError, Loader, Model
from loaders.errors import ErrorKind, UserError
from loaders.fields import SettingError
from loaders.params import GenerationParams
from loaders.registry import detect, get, is_url, names

__all__ = ["ErrorKind", "GenerationError", "GenerationParams", "LoadError", "Loader", "Model",
           "SettingError", "UserError", "detect", "get", "is_url", "names"]
