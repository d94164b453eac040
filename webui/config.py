"""Server settings: how Hearth is served (address, login, API limits, extensions).

Read by the composition root (webui.app) and the faces; the command line is built
from it."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 7860


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    listen: bool = False
    auth: str | None = None  # "user:password" for the UI login
    models_dir: str = "models"
    model: str | None = None
    loader: str | None = None
    no_model: bool = False
    api_key: str | None = None  # Bearer key for the OpenAI-compatible API
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; none = closed
    max_request_mb: float = 8.0  # largest API request body
    max_prompt_chars: int = 1_000_000  # longest prompt (all messages together) the API takes
    max_queue: int = 64  # API requests refused (429) while this many wait in the queue
    extensions: tuple[str, ...] = ()  # switched on for this run (issue 8)
    extension_dirs: tuple[str, ...] = ()  # more folders to find extensions in
    extension_timeout: float = 10.0  # seconds a hook may run before its extension is switched off
