"""The one base type for errors a user can cause or act on.

Backends raise these, so the type lives at the bottom of the house (webui may not be
imported from here). Each error carries a `kind`; the core passes the error object
along unchanged (through the generation queue too), and each face turns the kind into
its own display: the API into an HTTP status, the UI into a one-line notice.

Some subclasses also derive from ValueError or RuntimeError, because callers (and
pydantic validators, which only report ValueErrors) catch those.
"""
from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID = "invalid"  # bad input: a parameter, a name, a file that is not what it claims
    NOT_FOUND = "not_found"  # what was named does not exist
    CONFLICT = "conflict"  # cannot be done in the present state
    TOO_LARGE = "too_large"  # a prompt, a file or a request over a limit
    BUSY = "busy"  # the queue is full: try again shortly
    UNAVAILABLE = "unavailable"  # nothing to serve it: no model loaded, the engine unreachable
    FAILED = "failed"  # a load or a generation failed for a reason the user can act on
    INTERNAL = "internal"  # a bug: an unexpected exception, wrapped


class UserError(Exception):
    """An error whose message is one line a person can act on."""

    kind: ErrorKind = ErrorKind.FAILED  # each subclass names its own

    def __init__(self, message: object = "", *, kind: ErrorKind | None = None):
        # Backends pass on library messages, which may span lines: one line, always.
        super().__init__(" ".join(str(message).split()))
        if kind is not None:
            self.kind = kind  # this one error is of another kind than its class

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


def describe_exception(error: BaseException, limit: int = 200) -> str:
    """An unexpected exception as one short line, "TypeName: message", for the user
    error that wraps it (the traceback goes to the log)."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
