"""Reply versions (swipes): Regenerate and Reproduce keep every version of a reply,
and the arrows choose which one the chat shows.

A message keeps its shape: its own keys (`content`, `reasoning_content`, `tool_events`,
`provenance`) are always the chosen version, so the prompt of every later turn, the
exports and every older reader see just that one. Two optional keys hold the rest:
`versions`, the list of every version (each a dict of those keys), and `version`, the
index of the chosen one. The chosen version's entry in `versions` is refreshed from the
message's own keys whenever another is chosen or added, and when a chat is read, so an
edit of the shown reply is never lost. A message with one version has neither key: files
written before versions existed read unchanged.

Pure functions on message dicts; Conversation (conversation.py) calls them.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from webui.chat.provenance import valid_record
from webui.errors import ErrorKind, UserError

VERSION_KEYS = ("content", "reasoning_content", "tool_events", "provenance")
MAX_VERSIONS = 100  # versions kept per reply; the oldest go first beyond this


class VersionError(UserError):
    """A reply version that is not there (one line)."""

    kind = ErrorKind.INVALID


def snapshot(message: dict[str, Any]) -> dict[str, Any]:
    """The message's version keys, copied."""
    return {k: copy.deepcopy(message[k]) for k in VERSION_KEYS if k in message}


def versions_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Every version of a message, the chosen one as the message now shows it."""
    saved = message.get("versions")
    if not saved:
        return [snapshot(message)]
    out = list(saved)
    out[chosen(message)] = snapshot(message)
    return out


def chosen(message: dict[str, Any]) -> int:
    saved = message.get("versions")
    return message.get("version", 0) if saved else 0


def count(message: dict[str, Any]) -> int:
    return len(message.get("versions") or ()) or 1


def _show(message: dict[str, Any], versions: list[dict[str, Any]], index: int) -> None:
    for key in VERSION_KEYS:
        message.pop(key, None)
    message.update(copy.deepcopy(versions[index]))
    message.setdefault("content", "")
    if len(versions) > 1:
        message["versions"] = versions
        message["version"] = index
    else:
        message.pop("versions", None)
        message.pop("version", None)


def add_version(message: dict[str, Any], earlier: dict[str, Any]) -> None:
    """`message` is a new reply in the place of `earlier`: it becomes the newest version
    and is shown; the earlier versions are kept."""
    versions = (versions_of(earlier) + [snapshot(message)])[-MAX_VERSIONS:]
    _show(message, versions, len(versions) - 1)


def choose(message: dict[str, Any], index: int) -> None:
    versions = versions_of(message)
    if not 0 <= index < len(versions):
        raise VersionError(f"this reply has no version {index + 1} (it has {len(versions)})")
    _show(message, versions, index)


def settle(messages: list[dict[str, Any]], earlier: dict[str, Any]) -> None:
    """A regenerated reply has ended (or was abandoned): if it left a message at the end
    of the chat, that is the newest version of `earlier`; if not (it failed, or was
    stopped before any text), `earlier` is put back as it was."""
    if messages and messages[-1]["role"] == "assistant":
        add_version(messages[-1], earlier)
    else:
        messages.append(earlier)


def last_reply(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The reply whose versions the arrows switch (the chat's last message)."""
    first = 1 if messages and messages[0]["role"] == "assistant" else 0  # not the greeting
    if len(messages) <= first or messages[-1]["role"] != "assistant":
        raise VersionError("there is no reply to switch: the chat does not end with one")
    return messages[-1]


def swipe(messages: list[dict[str, Any]], step: int) -> tuple[int, int]:
    """Show the last reply's previous (-1) or next (+1) version; (shown, how many), 1-based."""
    message = last_reply(messages)
    n = count(message)
    if n < 2:
        raise VersionError("this reply has one version: Regenerate makes another")
    index = min(max(chosen(message) + step, 0), n - 1)
    choose(message, index)
    return index + 1, n


def read_versions(raw: dict[str, Any], kept: dict[str, Any],
                  valid_tool_event: Callable[[Any], bool]) -> None:
    """Copy a saved message's versions into `kept` (the message as read, its own keys
    already checked) when they have this shape; anything else is left out, and the
    message reads as its one shown version."""
    saved = raw.get("versions")
    if not isinstance(saved, list):
        return
    versions = []
    for v in saved:
        if not isinstance(v, dict) or not isinstance(v.get("content"), str):
            return  # the saved index would point elsewhere: keep only the shown version
        version = {"content": v["content"]}
        if isinstance(v.get("reasoning_content"), str) and v["reasoning_content"]:
            version["reasoning_content"] = v["reasoning_content"]
        calls = [c for c in v.get("tool_events") or () if valid_tool_event(c)] \
            if isinstance(v.get("tool_events"), list) else []
        if calls:
            version["tool_events"] = calls
        record = valid_record(v.get("provenance"))
        if record is not None:
            version["provenance"] = record
        versions.append(version)
    index = raw.get("version")
    if len(versions) < 2 or not isinstance(index, int) or isinstance(index, bool) \
            or not 0 <= index < len(versions):
        return
    versions[index] = snapshot(kept)  # the message's own keys are the chosen version
    kept["versions"] = versions
    kept["version"] = index
