"""Whose request is running: the user name a face set for it, "local" when Hearth has
no accounts. The API sets it for each request (`acting_as`); the UI registers a lookup
that reads the Gradio event's logged-in user. Other code (the generation queue's owner,
extensions) only calls `current_user()`.

An API request may also name the person it is for (OpenAI's `user` field): an app that
serves many people with one key. That end user is no account: the request still runs as
the key's user (their role, their folder); only the generation queue tells the end users
apart, as owners "USER/END" (`queue_owner()`), so they take turns within that user's."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

LOCAL_USER = "local"  # the one user of a Hearth without accounts

_CURRENT: ContextVar[str | None] = ContextVar("hearth_current_user", default=None)
_END_USER: ContextVar[str | None] = ContextVar("hearth_end_user", default=None)
_LOOKUPS: list[Callable[[], str | None]] = []


def current_user() -> str:
    """The user of the request being served in this thread or task; LOCAL_USER if none."""
    name = _CURRENT.get()
    if name:
        return name
    for lookup in _LOOKUPS:
        name = lookup()
        if name:
            return name
    return LOCAL_USER


@contextmanager
def acting_as(name: str | None) -> Iterator[None]:
    token = _CURRENT.set(name)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def add_lookup(lookup: Callable[[], str | None]) -> None:
    """A face's way to say who is calling when it cannot wrap the call in `acting_as`
    (Gradio calls the handlers itself). Added once per lookup."""
    if lookup not in _LOOKUPS:
        _LOOKUPS.append(lookup)


def queue_owner() -> str:
    """Whose turn a reply takes in the generation queue: the current user, or
    "USER/END" when the request names an end user (`for_end_user`)."""
    end = _END_USER.get()
    return f"{current_user()}/{end}" if end else current_user()


@contextmanager
def for_end_user(name: str | None) -> Iterator[None]:
    """Requests submitted inside are queued for end user `name` of the current user
    (None or "": the user's own turn)."""
    token = _END_USER.set(name or None)
    try:
        yield
    finally:
        _END_USER.reset(token)
