"""The extension API, version 1: what an extension's `script.py` may define and what
Hearth hands it. This module is the contract; docs/EXTENSIONS.md explains it.

An extension never imports Hearth's internals: it gets an `ExtensionContext` and the
types below. Everything here stays backward compatible within one API version; a
change that would break an extension raises EXTENSION_API_VERSION, and Hearth then
refuses extensions written for another version with a one-line reason.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

# Part of the contract: an extension's own errors derive from UserError, so Hearth
# shows them as it shows its own (a one-line notice, an HTTP status by kind).
from webui.accounts.current import current_user
from webui.errors import ErrorKind, UserError  # noqa: F401
from webui.userdata.atomic import write_bytes_atomic

# Part of the contract too: reading a user's text, Markdown, code or PDF file, as the
# chat's attachments do (one copy, webui/userdata/file_text.py).
from webui.userdata.file_text import FileTextError, clean_name, decode_text, read_pdf_pages  # noqa: F401

if TYPE_CHECKING:  # for type checkers only: importing them costs, and core needs neither
    from loaders.params import GenerationParams
    from webui.runtime.generation import GenerationJob, GenerationStats

EXTENSION_API_VERSION = 1

Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class Quote:
    """A part of the prompt that came from outside the conversation (a file, a web
    page): untrusted text. The UI marks these so the user sees what the model saw."""
    extension: str  # who added it
    source: str  # where it came from, as shown to the user ("notes.pdf, page 3")
    text: str


@dataclass
class Prompt:
    """What the model is about to see, before the template turns it into tokens.

    For a chat reply (`kind == "chat"`) `messages` is a copy of the conversation
    and `system_prompt` the system message; for a plain completion (the Notebook,
    the API's /v1/completions) `text` is the whole prompt. Edits change only what
    the model sees this time: the saved chat history keeps what the user wrote.
    """
    kind: Literal["chat", "completion"]
    messages: list[Message] = field(default_factory=list)
    system_prompt: str = ""
    text: str = ""
    quotes: list[Quote] = field(default_factory=list)  # untrusted parts added by extensions
    # Per-extension notes for this one request, keyed by extension name: a
    # modify_prompt hook leaves something here that its modify_output reads.
    notes: dict[str, Any] = field(default_factory=dict)

    def last_user_message(self) -> Message | None:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m
        return None


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model, as extensions see it."""
    name: str
    loader: str
    path: str
    context_length: int


class ExtensionContext:
    """Handed to every hook: the extension's name, its own folder for data, its
    persisted settings, a logger, and the few app calls an extension may make."""

    def __init__(self, name: str, data_dir: Path, settings: SettingsAccess, app: AppAccess,
                 user_dirs: Callable[[str], Path] | None = None):
        self.name = name
        self.api_version = EXTENSION_API_VERSION
        self._data_dir = data_dir
        # With accounts: a user's name -> this extension's folder of that user's data.
        # None: one folder for everyone (no accounts, or the extension set SHARED_DATA = True).
        self._user_dirs = user_dirs
        self._settings = settings
        self._app = app
        self.log = logging.getLogger(f"hearth.extensions.{name}")
        # While ui_tab runs: the gr.Tab being built, e.g. for `ctx.tab.select(...)`
        # to refresh the tab when the user opens it. None everywhere else.
        self.tab: Any = None

    @property
    def user(self) -> str:
        """The name of the user whose request (UI event, API call, hook) is running now;
        "local" when Hearth has no accounts. Keep per-user state keyed by it."""
        return current_user()

    @property
    def data_dir(self) -> Path:
        """A folder of this extension's own in the current user's data folder (created
        on first use); one folder for all users if the extension's script.py sets
        SHARED_DATA = True, or Hearth has no accounts."""
        folder = self._user_dirs(self.user) if self._user_dirs is not None else self._data_dir
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def save_file(self, name: str, data: bytes | str) -> Path:
        """Write a file of data_dir atomically: a reader, or a crash, sees the old
        content or the new, never half. `name` is a plain file name."""
        if not name or Path(name).name != name or name.startswith("."):
            raise ValueError(f"{name!r} is not a plain file name")
        path = self.data_dir / name
        write_bytes_atomic(path, data.encode("utf-8") if isinstance(data, str) else data)
        return path

    # --- persisted settings (JSON values) ---------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        return self._settings.get(self.name, key, default)

    def set_setting(self, key: str, value: Any) -> None:
        """Saved at once (atomically) in the user data folder; JSON values only."""
        self._settings.set(self.name, key, value)

    # --- the app ----------------------------------------------------------------------
    def model(self) -> ModelInfo | None:
        """The loaded model, or None."""
        return self._app.model()

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` with the loaded model's tokenizer (raises LoadError if none)."""
        return self._app.tokenize(text)

    def generate(self, prompt: str | Sequence[int], params: GenerationParams | None = None) -> GenerationJob:
        """Queue a generation like any other request (first come, first served) and
        return its job: `job.result()` -> (text, stats), `job.stop()`. No hooks run on it."""
        return self._app.generate(prompt, params)

    def embed(self, texts: list[str]) -> Any:
        """Unit vectors (a float32 NumPy array, one row of 384 per text) from the built-in
        all-MiniLM-L6-v2, the model /v1/embeddings serves under that name; loaded on
        first use. Raises UserError when the model is not installed."""
        return self._app.embed(texts)

    def recent_replies(self) -> list[GenerationStats]:
        """Stats of the latest finished replies (all users, UI and API), oldest first:
        token counts, prompt_tokens_per_second, generation_tokens_per_second,
        context_length, finish_reason."""
        return self._app.recent_replies()


class SettingsAccess:
    """How the context reaches the persisted settings (implemented by the manager)."""
    get: Callable[[str, str, Any], Any]
    set: Callable[[str, str, Any], None]


class AppAccess:
    """How the context reaches the app (implemented by the manager)."""
    model: Callable[[], ModelInfo | None]
    tokenize: Callable[[str], list[int]]
    generate: Callable[..., Any]
    recent_replies: Callable[[], list[Any]]
    embed: Callable[[list[str]], Any]


@dataclass(frozen=True)
class HookSpec:
    name: str
    params: tuple[str, ...]  # what the hook is called with, in order
    returns: str  # for the docs and the error messages
    check: Callable[[Any], bool]  # whether a returned value is acceptable


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_none(value: Any) -> bool:
    return value is None


def _is_prompt_or_none(value: Any) -> bool:
    return value is None or isinstance(value, Prompt)


def _is_functions(value: Any) -> bool:
    return isinstance(value, list) and all(callable(f) and hasattr(f, "__name__") for f in value)


def _is_router(value: Any) -> bool:
    # Checked by duck type so core never imports FastAPI.
    return hasattr(value, "routes") and hasattr(value, "include_router")


# Every hook is optional. The order here is the order they are documented in.
HOOKS: dict[str, HookSpec] = {spec.name: spec for spec in (
    HookSpec("setup", ("ctx",), "None", _is_none),
    HookSpec("modify_input", ("text", "ctx"), "str", _is_str),
    HookSpec("modify_prompt", ("prompt", "ctx"), "Prompt | None", _is_prompt_or_none),
    HookSpec("modify_output", ("text", "prompt", "ctx"), "str", _is_str),
    HookSpec("on_model_load", ("model", "ctx"), "None", _is_none),
    HookSpec("ui_tab", ("ctx",), "None", lambda value: True),
    HookSpec("api_router", ("ctx",), "fastapi.APIRouter", _is_router),
    HookSpec("tools", ("ctx",), "list of functions", _is_functions),
    HookSpec("teardown", ("ctx",), "None", _is_none),
)}
