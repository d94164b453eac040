"""Branches: a new chat that starts from any message of another, keeping the history up
to it (each reply with its versions and records), and remembering where it came from
(`ChatHistory.branched_from`: the source chat's id and title, and the message's index),
which the chat list shows."""
from __future__ import annotations

import copy

from webui.chat.histories import TITLE_LENGTH, ChatHistory, HistoryError, HistoryStore


def branch(store: HistoryStore, source: ChatHistory, index: int) -> ChatHistory:
    """A new chat, saved at once, with `source`'s messages up to and including `index`."""
    if not 0 <= index < len(source.messages):
        raise HistoryError(f"there is no message {index + 1} to branch from")
    new = store.new(source.character, source.mode)
    new.messages = copy.deepcopy(source.messages[:index + 1])
    title = f"Branch of {source.title}"
    new.title = title if len(title) <= TITLE_LENGTH else title[:TITLE_LENGTH - 1] + "…"
    new.titled_by_user = True  # not renamed after its first message: that is the source's title
    new.branched_from = {"id": source.id, "title": source.title, "message": index}
    store.save(new)
    return new

