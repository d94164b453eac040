"""The author's note: a short instruction the prompt builder inserts a fixed number of
messages from the end of the history, where the model weighs it most, in every mode.

It is per chat, saved in the chat file (`authors_note`: text, depth, on/off). Depth 0
puts it after the last message, depth 1 before the last message, and so on; a depth
past the start of the kept history puts it first. Continuing a reply keeps that
reply last (a depth of 0 counts as 1). It goes in as a system message, as
SillyTavern's does by default: the template shows it as one, and the chat mode's
transcript as a "System:" line.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loaders.fields import SettingError, build, setting
from webui.chat.budget import TEMPLATE, PromptShare

log = logging.getLogger(__name__)

Message = dict[str, Any]
MAX_DEPTH = 100


@dataclass(frozen=True)
class AuthorsNote:
    text: str = setting("", "A short instruction for the model, e.g. \"Keep replies under three sentences.\"",
                        max_length=2000)
    depth: int = setting(4, "Where it goes: how many messages before the end (0 = after the last message).",
                         minimum=0, maximum=MAX_DEPTH, step=1)
    enabled: bool = setting(True, "Put the note into the prompt.")

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.text.strip())


def make_note(text: str, depth: int | float | str, enabled: bool) -> AuthorsNote:
    """A note from the controls' values; one-line SettingError for a bad one."""
    return build(AuthorsNote, text=text or "", depth=depth, enabled=enabled)


def note_from_json(data: Any) -> AuthorsNote | None:
    """The `authors_note` key of a chat file; None if there is none (or it is damaged, logged)."""
    if data is None:
        return None
    try:
        if not isinstance(data, dict):
            raise SettingError("not a mapping")
        return build(AuthorsNote, {k: data[k] for k in ("text", "depth", "enabled") if k in data})
    except SettingError as e:
        log.warning("ignoring a damaged author's note in a chat file: %s", e)
        return None


def note_shares(note: AuthorsNote | None) -> tuple[PromptShare, ...]:
    """The note's line in the context budget view under a reply (chat/budget.py): a
    message of its own, so its tokens come out of what the template adds."""
    return (PromptShare("Author's note", note.text.strip(), within=TEMPLATE),) if note is not None and note.active \
        else ()


def with_note(messages: Sequence[Message], note: AuthorsNote | None, continuing: bool = False) -> list[Message]:
    """`messages` with the note inserted `note.depth` messages from the end."""
    out = list(messages)
    if note is None or not note.active:
        return out
    depth = max(note.depth, 1 if continuing and out else 0)
    out.insert(max(len(out) - depth, 0), {"role": "system", "content": note.text.strip()})
    return out
