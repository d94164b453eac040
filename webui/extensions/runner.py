"""Running a piece of extension code with a time limit.

Python cannot kill a thread, so a hook that hangs is left running in a daemon
thread while the caller goes on without it (and the manager switches the extension
off, so it is never called again). One short-lived thread per call: a pool would
fill up with hung hooks and then stall every other extension.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any


class HookTimeout(Exception):
    pass


def call_with_timeout(fn: Callable[..., Any], args: tuple, timeout: float, name: str) -> Any:
    """fn(*args), or HookTimeout after `timeout` seconds; fn's own exception is re-raised."""
    box: dict[str, Any] = {}
    done = threading.Event()
    # The caller's context vars go along, so a hook running for a Gradio event can
    # still raise gr.Warning/gr.Info to that browser.
    context = contextvars.copy_context()

    def run() -> None:
        try:
            box["value"] = context.run(fn, *args)
        except BaseException as e:  # reported to the caller, whatever it is
            box["error"] = e
        finally:
            done.set()

    thread = threading.Thread(target=run, name=f"hearth-ext-{name}", daemon=True)
    thread.start()
    if not done.wait(timeout):
        raise HookTimeout(f"did not finish within {timeout:g}s")
    if "error" in box:
        error = box["error"]
        if isinstance(error, Exception):
            raise error
        # SystemExit or the like from an extension must not end the caller's thread.
        raise RuntimeError(f"{type(error).__name__}: {error}") from error
    return box["value"]
