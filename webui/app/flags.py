"""The command line's flags, generated from the declared settings: `ServerSettings`,
`ChatSettings` and every loader's options (and `DownloadSettings` for `hearth
download`). Imports no model library, so `hearth --help` answers at once."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import loaders
from loaders.fields import SettingError, SettingSpec, build, describe, validate
from webui import __version__
from webui.accounts.users import UserBook
from webui.chat.settings import ChatSettings, SettingsStore, chat_flags
from webui.config import ENVIRONMENT, LOOPBACK_HOSTS, SERVER_GROUP, ServerSettings, env_name, environment_settings
from webui.errors import UserError
from webui.userdata.folders import UserData

log = logging.getLogger(__name__)


def _help(spec: SettingSpec) -> str:
    text = spec.help
    if spec.default not in (None, "", ()):
        text += f" (default: {spec.default})"
    if spec.env:
        text += f" (or set {spec.env})"
    return text.replace("%", "%%")  # argparse formats help with %


def _add_setting(group: argparse._ActionsContainer, spec: SettingSpec, dest: str) -> None:
    """One flag for one declared setting. Every flag defaults to None, so "not given"
    stays distinct from a value and the declaration (or the environment) decides."""
    kwargs: dict[str, Any] = {"help": _help(spec)}
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    if spec.positional:
        group.add_argument(dest, **kwargs)
        return
    if spec.type is bool:
        # --no-model is already the negative: a --no-no-model would only confuse.
        action = "store_true" if spec.name.startswith("no_") else argparse.BooleanOptionalAction
        group.add_argument(spec.flag, dest=dest, action=action, default=None, help=kwargs["help"])
        return
    kwargs.update(dest=dest, default=None)
    if spec.choices:
        kwargs["choices"] = spec.choices
    if spec.type in (int, float):
        kwargs["type"] = spec.type
        kwargs.setdefault("metavar", "N")
    elif not spec.choices:
        kwargs.setdefault("metavar", spec.name.upper())  # not the dest's prefixed name
    if spec.type is tuple:
        kwargs["action"] = "extend" if spec.nargs else "append"
        if spec.nargs:
            kwargs["nargs"] = spec.nargs
    group.add_argument(spec.flag, **kwargs)


def add_settings(parser: argparse.ArgumentParser, cls: type, default_group: str | None = None,
                 groups: dict[str, argparse._ArgumentGroup] | None = None, prefix: str = "") -> None:
    """A flag for each setting of `cls`, in the --help section its declaration names
    (or `default_group`; None: argparse's own). Advanced settings (a Jinja template,
    say) are left to the UI: they make poor flags."""
    groups = {} if groups is None else groups
    for spec in describe(cls):
        if spec.advanced:
            continue
        title = spec.group or default_group
        if title is not None and title not in groups:
            groups[title] = parser.add_argument_group(title)
        _add_setting(parser if title is None else groups[title], spec, dest=prefix + spec.name)


def _flag_message(cls: type, error: SettingError) -> str:
    """build()'s message names the setting; on the command line, name its flag."""
    text = str(error)
    for spec in describe(cls):
        if text.startswith(spec.name + " "):
            return (spec.name if spec.positional else spec.flag) + text[len(spec.name):]
    return text


def build_from_args(cls: type, args: argparse.Namespace, fallback: Mapping[str, Any] | None = None) -> Any:
    """The flags given (dest = setting name) over `fallback`, over the declared defaults;
    validated, and a SettingError names the flag."""
    given = {s.name: getattr(args, s.name) for s in describe(cls) if getattr(args, s.name, None) is not None}
    try:
        return build(cls, {**(fallback or {}), **given})
    except SettingError as e:
        raise SettingError(_flag_message(cls, e)) from None


def _epilog(width: int = 78) -> str:
    download = textwrap.fill("Download a model: hearth download ORG/REPO [--include PATTERN] [--revision REV] "
                             "(see hearth download --help).", width)
    download += "\n" + textwrap.fill("Several users, each with their own chats and documents: hearth users "
                                     "add|remove|passwd|role|list|key (see hearth users --help).", width)
    names = max(len(v.name) for v in ENVIRONMENT)
    indent = " " * (names + 4)
    table = [textwrap.fill(f"{v.flag}: {v.help}", width, initial_indent=f"  {v.name.ljust(names)}  ",
                           subsequent_indent=indent) for v in ENVIRONMENT]
    text = f"{download}\n\nenvironment variables (a flag given wins):\n" + "\n".join(table)
    return text.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth",
        description="Hearth: run large language models on your own machine, in your browser.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    groups: dict[str, argparse._ArgumentGroup] = {}
    add_settings(parser, ServerSettings, SERVER_GROUP, groups)
    # --mode/--character/...: remembered in the user data folder (next to --user-data).
    add_settings(parser, ChatSettings, SERVER_GROUP, groups, prefix="chat_")
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


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ServerSettings:
    """The server settings: flags, then HEARTH_* variables, then the declared defaults.
    Raises SettingError (one line, naming the flag) for a value out of bounds."""
    settings = build_from_args(ServerSettings, args, environment_settings(environ))
    # --listen means every interface, unless --host names the one to serve on.
    host = "0.0.0.0" if settings.listen and getattr(args, "host", None) is None else settings.host
    return dataclasses.replace(settings, host=host, listen=settings.listen or host not in LOOPBACK_HOSTS,
                               api_key=settings.api_key or None)


def check_network_safety(settings: ServerSettings) -> str | None:
    """Binding beyond loopback without a login would hand the machine to the LAN."""
    try:
        users = UserBook(UserData.at(settings.user_data).users_file).users()
    except UserError as e:  # a damaged users file: never serve as if there were no users
        return str(e)
    if bool(settings.ssl_certfile) != bool(settings.ssl_keyfile):
        return "give both --ssl-certfile and --ssl-keyfile, or neither"
    for path in (settings.ssl_certfile, settings.ssl_keyfile):
        if path and not Path(path).expanduser().is_file():
            return f"cannot serve https: {path} is not a file"
    if settings.listen:
        missing = [what for what, ok in (
            (f"users ('hearth users add NAME') or --auth USER:PASSWORD for the UI login (or {env_name('auth')})",
             settings.auth or users),
            (f"API keys ('hearth users key NAME') or --api-key KEY for the API (or {env_name('api_key')})",
             settings.api_key or any(u.key_hash for u in users))) if not ok]
        if missing:
            return (f"refusing to serve on the network without authentication: add {' and '.join(missing)}; "
                    "or drop --listen to stay on 127.0.0.1")
    if settings.auth is not None:
        user, colon, password = settings.auth.partition(":")
        if not (colon and user.strip() and password):
            return "--auth must be USER:PASSWORD, with neither part empty"
    if settings.api_key is not None and not settings.api_key.strip():
        return "--api-key must not be blank"
    try:
        validate(settings)  # settings made in code, not through settings_from_args
    except SettingError as e:
        return _flag_message(ServerSettings, e)
    return None


def apply_chat_flags(args: Any, user_data: str | Path | None = None) -> None:
    """At start-up: --mode/--character/... become the remembered settings, in the user
    data folder (`user_data`, or the one the flags and environment name)."""
    flags = chat_flags(args)
    if not flags:
        return
    folder = user_data if user_data is not None else settings_from_args(args).user_data
    try:
        SettingsStore(UserData.at(folder).settings_file).update(**flags)
    except (SettingError, OSError) as e:
        log.warning("could not remember %s: %s", ", ".join(f"--{k.replace('_', '-')}" for k in flags), e)
