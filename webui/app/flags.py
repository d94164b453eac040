"""The command line's flags: server settings, chat settings and every loader's options,
the last two generated from their dataclasses. Imports no model library, so
`hearth --help` answers at once."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import loaders
from loaders.fields import SettingError, SettingSpec, describe
from webui import __version__
from webui.chat.settings import ChatSettings, SettingsStore, chat_flags
from webui.config import DEFAULT_PORT, ServerSettings
from webui.userdata.folders import ENV_VAR, UserData

log = logging.getLogger(__name__)


def _flag(spec: SettingSpec) -> str:
    return "--" + spec.name.replace("_", "-")


def _add_setting(group: argparse._ArgumentGroup, spec: SettingSpec, dest: str) -> None:
    help_text = f"{spec.help} (default: {spec.default})"
    if spec.type is bool:
        group.add_argument(_flag(spec), dest=dest, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        return
    kwargs = dict(dest=dest, default=None, help=help_text)
    if spec.choices:
        kwargs["choices"] = spec.choices
    if spec.type in (int, float):
        kwargs["type"] = spec.type
        kwargs["metavar"] = "N"
    if spec.type is tuple:
        kwargs["action"] = "append"
    group.add_argument(_flag(spec), **kwargs)


def _add_chat_flags(parser: argparse.ArgumentParser) -> None:
    """--user-data, and --mode/--character/--template/--preset/--user-name generated
    from ChatSettings (issue 5)."""
    chat = parser.add_argument_group("chat (remembered in the user data folder)")
    chat.add_argument("--user-data", default=os.environ.get(ENV_VAR), metavar="DIR",
                      help=f"folder for chat histories, settings and your own characters and presets "
                      f"(or set {ENV_VAR}; default: user_data)")
    for spec in describe(ChatSettings):
        if not spec.advanced:
            _add_setting(chat, spec, dest=f"chat_{spec.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth",
        description="Hearth: run large language models on your own machine, in your browser.",
        epilog="Download a model: hearth download ORG/REPO [--include PATTERN] [--revision REV] "
               "(see hearth download --help).",
    )
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    server = parser.add_argument_group("server")
    server.add_argument("--model", help="model file or folder (a path, or a name in --models-dir); "
                        "default: the built-in SmolLM2-135M-Instruct")
    server.add_argument("--loader", choices=loaders.names(),
                        help="backend to load it with (default: detected from the file)")
    server.add_argument("--no-model", action="store_true", help="start without loading a model")
    server.add_argument("--models-dir", default="models", help="where your models live (default: models)")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    server.add_argument("--listen", action="store_true",
                        help="serve on every network interface (0.0.0.0); requires --auth and --api-key")
    server.add_argument("--auth", default=os.environ.get("HEARTH_AUTH"),
                        help="USER:PASSWORD for the UI login (or set HEARTH_AUTH)")
    api = parser.add_argument_group("API")
    api.add_argument("--api-key", default=os.environ.get("HEARTH_API_KEY"),
                     help="key that API clients must send as 'Authorization: Bearer KEY' "
                     "(or set HEARTH_API_KEY); without it the API is open to this machine only")
    api.add_argument("--cors-origins", default="", metavar="ORIGINS",
                     help="comma-separated browser origins allowed to call the API, e.g. "
                     "https://app.example.com (default: none)")
    api.add_argument("--max-request-mb", type=float, default=ServerSettings.max_request_mb, metavar="MB",
                     help=f"largest API request body (default: {ServerSettings.max_request_mb:g})")
    api.add_argument("--max-prompt-chars", type=int, default=ServerSettings.max_prompt_chars, metavar="N",
                     help=f"longest prompt the API takes (default: {ServerSettings.max_prompt_chars})")
    api.add_argument("--max-queue", type=int, default=ServerSettings.max_queue, metavar="N",
                     help=f"refuse API requests while this many wait (default: {ServerSettings.max_queue})")
    ext = parser.add_argument_group("extensions (docs/EXTENSIONS.md)")
    ext.add_argument("--extensions", nargs="+", action="extend", default=[], metavar="NAME",
                     help="extensions to switch on for this run (folders in extensions/); the Extensions "
                     "tab switches them on for good")
    ext.add_argument("--extensions-dir", action="append", default=[], metavar="DIR",
                     help="another folder of extensions (repeatable)")
    ext.add_argument("--extension-timeout", type=float, default=ServerSettings.extension_timeout, metavar="S",
                     help="seconds an extension's hook may run before the extension is switched off "
                     f"(default: {ServerSettings.extension_timeout:g})")
    _add_chat_flags(parser)
    seen: set[str] = set()
    for name in loaders.names():
        loader = loaders.get(name)
        group = parser.add_argument_group(f"{name} options")
        for spec in describe(loader.Options):
            if spec.name in seen:
                continue  # the same option (say, n_ctx) is shared by several loaders
            seen.add(spec.name)
            _add_setting(group, spec, dest=f"opt_{spec.name}")
    return parser


def loader_options_from_args(args: argparse.Namespace, loader_name: str) -> dict:
    names = {s.name for s in describe(loaders.get(loader_name).Options)}
    out = {}
    for key, value in vars(args).items():
        if key.startswith("opt_") and value is not None and key[4:] in names:
            out[key[4:]] = value
    return out


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    host = "0.0.0.0" if args.listen else args.host
    return ServerSettings(host=host, port=args.port, listen=args.listen or host not in
                          ("127.0.0.1", "localhost", "::1"), auth=args.auth,
                          models_dir=args.models_dir, model=args.model, loader=args.loader,
                          no_model=args.no_model, api_key=args.api_key or None,
                          cors_origins=tuple(o.strip() for o in args.cors_origins.split(",") if o.strip()),
                          max_request_mb=args.max_request_mb, max_prompt_chars=args.max_prompt_chars,
                          max_queue=args.max_queue, extensions=tuple(args.extensions),
                          extension_dirs=tuple(args.extensions_dir), extension_timeout=args.extension_timeout)


def check_network_safety(settings: ServerSettings) -> str | None:
    """Binding beyond loopback without a login would hand the machine to the LAN."""
    if settings.listen:
        missing = [what for what, ok in (("--auth USER:PASSWORD for the UI login (or HEARTH_AUTH)", settings.auth),
                                         ("--api-key KEY for the API (or HEARTH_API_KEY)", settings.api_key)) if not ok]
        if missing:
            return (f"refusing to serve on the network without authentication: add {' and '.join(missing)}; "
                    "or drop --listen to stay on 127.0.0.1")
    if settings.auth and ":" not in settings.auth:
        return "--auth must be USER:PASSWORD"
    if settings.api_key is not None and not settings.api_key.strip():
        return "--api-key must not be blank"
    for name in ("max_request_mb", "max_prompt_chars", "max_queue", "extension_timeout"):
        if getattr(settings, name) <= 0:
            return f"--{name.replace('_', '-')} must be greater than 0"
    return None


def apply_chat_flags(args: Any) -> None:
    """At start-up: --user-data picks the folder (for every part of Hearth, through
    the environment), and --mode/--character/... become the remembered settings."""
    if getattr(args, "user_data", None):
        os.environ[ENV_VAR] = str(args.user_data)
    flags = chat_flags(args)
    if flags:
        try:
            SettingsStore(UserData.from_env().settings_file).update(**flags)
        except (SettingError, OSError) as e:
            log.warning("could not remember %s: %s", ", ".join(f"--{k.replace('_', '-')}" for k in flags), e)
