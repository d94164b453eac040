"""Running one tool call with a time limit, whatever the tool is.

A Python tool runs in a daemon thread and is abandoned when it runs past its limit
(Python cannot kill a thread; an MCP call is cancelled with its connection instead).
Whatever goes wrong becomes one line: the chat shows it and goes on.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

from webui.errors import ErrorKind, UserError

MAX_RESULT_CHARS = 8000  # a result longer than this is cut: it would crowd out the chat


class ToolFailure(UserError):
    """A tool call that did not give a result, in one line."""

    kind = ErrorKind.FAILED


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def clip(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n[… {len(text) - MAX_RESULT_CHARS} more characters cut]"


def run_with_limit(name: str, fn: Callable[[], Any], timeout: float) -> Any:
    """fn() in a daemon thread; ToolFailure if it raises or runs past `timeout` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - a tool's bug is a line in the chat
            box["error"] = e

    # The caller's context goes along: an extension's tool reads ctx.user (whose documents
    # library to search, say), which a bare thread would see as nobody's.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), name=f"hearth-tool-{name}",
                              daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ToolFailure(f"{name} gave no result within {timeout:g} s")
    if "error" in box:
        e = box["error"]
        if isinstance(e, ToolFailure):
            raise e
        raise ToolFailure(f"{name} failed: {type(e).__name__}: {one_line(str(e))}")
    return box.get("value")
