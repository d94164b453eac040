"""Server settings: how Hearth is served (address, login, API limits, extensions, the
user data folder).

Declared with `setting()` like every other setting: `hearth`'s flags, their help and
bounds are generated from `ServerSettings`, and `ENVIRONMENT` (the one table of the
HEARTH_* variables) from the same declarations. `environment_settings()` is the one
place those variables are read."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import loaders
from loaders.fields import describe, setting
from loaders.remote import API_KEY_ENV as REMOTE_API_KEY_ENV
from loaders.remote import API_KEY_URL_ENV as REMOTE_API_KEY_URL_ENV
from webui.chat.settings import SETTINGS_GROUP as CHAT_GROUP
from webui.chat.tools import TOOL_GRAMMARS

DEFAULT_PORT = 7860
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

SERVER_GROUP = "server"
API_GROUP = "API"
EXTENSIONS_GROUP = "extensions (docs/EXTENSIONS.md)"

# Ten years: more is "never" (0), and a wait past the platform's time_t would crash the idle timer.
MAX_IDLE_UNLOAD_MINUTES = 10 * 365 * 24 * 60

@dataclass(frozen=True)
class ServerSettings:
    model: str | None = setting(
        None, "model file or folder (a path, or a name in --models-dir); default: the built-in "
        "SmolLM2-135M-Instruct", group=SERVER_GROUP)
    loader: str | None = setting(None, "backend to load it with (default: detected from the file)",
                                 choices=tuple(loaders.names()), group=SERVER_GROUP)
    no_model: bool = setting(False, "start without loading a model", group=SERVER_GROUP)
    # A loaded model holds its RAM (or VRAM) while nobody uses it; reloading the built-in
    # one takes ~0.3 s, a 7B GGUF a few seconds.
    idle_unload: float = setting(0.0, "unload the model after this many minutes without a request; the next "
                                 "request loads it again with the same options (0: never)", minimum=0,
                                 maximum=MAX_IDLE_UNLOAD_MINUTES, metavar="MINUTES", group=SERVER_GROUP)
    models_dir: str = setting("models", "where your models live", metavar="DIR", group=SERVER_GROUP)
    host: str = setting("127.0.0.1", "address to bind (with --listen: 0.0.0.0 unless given)", group=SERVER_GROUP)
    port: int = setting(DEFAULT_PORT, "port", minimum=1, maximum=65535, group=SERVER_GROUP)
    listen: bool = setting(False, "serve on the network (every interface, or --host); requires users "
                           "('hearth users add') or --auth, and API keys ('hearth users key') or --api-key",
                           group=SERVER_GROUP)
    # A DNS-rebinding page reaches a loopback server under its own name: the Host header
    # tells such a request apart, so only the names the server is really served as pass.
    allowed_hosts: tuple[str, ...] = setting(
        (), "comma-separated extra host names the server answers to, e.g. a reverse proxy's name ('*': any); "
        "always allowed: 127.0.0.1, localhost, [::1], --host, and with --listen this machine's names and "
        "any IP address", separator=",", metavar="NAMES", group=SERVER_GROUP)
    auth: str | None = setting(None, "USER:PASSWORD for the UI login: one admin user (more users: "
                               "'hearth users add')", env="HEARTH_AUTH",
                               metavar="USER:PASSWORD", group=SERVER_GROUP)
    session_hours: float = setting(12.0, "hours a UI login lasts; then the browser must log in again", minimum=0,
                                   exclusive_minimum=True, metavar="H", group=SERVER_GROUP)
    # Without TLS a password typed on another machine crosses the LAN readable by anyone on it.
    ssl_certfile: str | None = setting(None, "TLS certificate (PEM) to serve https with, e.g. for --listen",
                                       metavar="FILE", group=SERVER_GROUP)
    ssl_keyfile: str | None = setting(None, "the TLS certificate's private key (PEM)", metavar="FILE",
                                      group=SERVER_GROUP)
    api_key: str | None = setting(
        None, "key that API clients must send as 'Authorization: Bearer KEY'; without it the API "
        "is open to this machine only", env="HEARTH_API_KEY", metavar="KEY", group=API_GROUP)
    # Closed unless listed: a browser page from another site can read no answer.
    cors_origins: tuple[str, ...] = setting(
        (), "comma-separated browser origins allowed to call the API, e.g. https://app.example.com "
        "(default: none)", separator=",", metavar="ORIGINS", group=API_GROUP)
    max_request_mb: float = setting(8.0, "largest request body (API or UI) in MiB", minimum=0,
                                    exclusive_minimum=True, metavar="MB", group=API_GROUP)
    max_prompt_chars: int = setting(1_000_000, "longest prompt (all messages together) the API takes, and "
                                    "longest text a UI box takes", minimum=1, group=API_GROUP)
    max_queue: int = setting(64, "refuse API requests (429) while this many wait in the queue", minimum=1,
                             group=API_GROUP)
    # The queue takes turns between users; this bounds what one user can pile up in it.
    # Half of max_queue: one user cannot fill the queue, and a lone user's script may
    # still keep dozens of requests waiting (the API tests send 20 at once).
    max_queue_per_user: int = setting(32, "refuse a user's requests (429 in the API, a notice in the UI) while "
                                      "this many of theirs wait in the queue", minimum=1, group=API_GROUP)
    # On by default: plain text under the text-or-call grammar kept its speed on the
    # built-in model (8.7 us of grammar per ~20 ms token; bench/structured.py --tool-grammar).
    tool_grammar: str = setting(
        "auto", "what constrains a reply when a request's tool_choice is 'auto': 'auto' = a grammar that "
        "leaves text free and, once the model begins a call, forces arguments that match the tool's schema; "
        "'required-only' = a grammar only for 'required' or a named function (auto replies are checked, "
        "not constrained)", choices=TOOL_GRAMMARS, env="HEARTH_TOOL_GRAMMAR", group=API_GROUP)
    max_upload_mb: float = setting(100.0, "largest file the UI takes as an upload, in MiB", minimum=0,
                                   exclusive_minimum=True, metavar="MB", group=SERVER_GROUP)
    # A client that sends its request slowly holds a connection and its buffers: every
    # request gets a deadline, whoever sends it.
    header_timeout: float = setting(10.0, "seconds a client may take to send a request's headers", minimum=0,
                                    exclusive_minimum=True, metavar="S", group=SERVER_GROUP)
    body_timeout: float = setting(60.0, "seconds a client may take to send a request's body (uploads included)",
                                  minimum=0, exclusive_minimum=True, metavar="S", group=SERVER_GROUP)
    max_connections_per_client: int = setting(
        64, "open connections one client address may hold; more are refused", minimum=1, metavar="N",
        group=SERVER_GROUP)
    extensions: tuple[str, ...] = setting(
        (), "extensions to switch on for this run (folders in extensions/); the Extensions tab switches "
        "them on for good", nargs="+", metavar="NAME", group=EXTENSIONS_GROUP)
    extension_dirs: tuple[str, ...] = setting((), "another folder of extensions (repeatable)",
                                              flag="--extensions-dir", metavar="DIR", group=EXTENSIONS_GROUP)
    extension_timeout: float = setting(10.0, "seconds an extension's hook may run before the extension is "
                                       "switched off", minimum=0, exclusive_minimum=True, metavar="S",
                                       group=EXTENSIONS_GROUP)
    user_data: str = setting("user_data", "folder for chat histories, settings and your own characters "
                             "and presets", env="HEARTH_USER_DATA", metavar="DIR", group=CHAT_GROUP)


@dataclass(frozen=True)
class EnvironmentVariable:
    name: str
    flag: str  # the command-line flag it stands in for
    help: str


def _environment() -> tuple[EnvironmentVariable, ...]:
    found = [EnvironmentVariable(s.env, s.flag, s.help) for s in describe(ServerSettings) if s.env]
    for name in loaders.names():
        found += [EnvironmentVariable(s.env, s.flag, s.help) for s in describe(loaders.get(name).Options) if s.env]
    # Also read by the remote loader itself: the one engine that key is sent to. Not a
    # load option, since a load request must not choose where the key goes.
    found.append(EnvironmentVariable(REMOTE_API_KEY_URL_ENV, "--remote-api-key",
                                     f"the engine URL that {REMOTE_API_KEY_ENV} belongs to; no other engine is sent it"))
    return tuple(found)


ENVIRONMENT: tuple[EnvironmentVariable, ...] = _environment()
ENV_NAMES = {v.name for v in ENVIRONMENT}


def env_name(setting_name: str) -> str:
    """The HEARTH_* variable of a server setting, e.g. env_name("api_key")."""
    return next(s.env for s in describe(ServerSettings) if s.name == setting_name and s.env)


def environment_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server settings given through HEARTH_* variables; an empty one counts as unset."""
    environ = os.environ if environ is None else environ
    return {s.name: environ[s.env] for s in describe(ServerSettings) if s.env and environ.get(s.env)}


def default_user_data() -> str:
    """The user data folder when none is given: $HEARTH_USER_DATA, else user_data."""
    return environment_settings().get("user_data", ServerSettings.user_data)
