"""The budget view's share of features whose text rides inside the chat's messages
(chat/budget.py `PromptShare`): each message's attached files, fenced as the prompt
holds them (chat/attachments.py). Apart from budget.py, which the prompt builder
imports, so that the attachments' imports never loop back into it."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webui.chat.attachments import prompt_content
from webui.chat.budget import HISTORY_KEPT, PromptShare

ATTACHMENTS = "Attachments"


def attachment_shares(messages: Iterable[dict[str, Any]]) -> tuple[PromptShare, ...]:
    """The fenced files of each message with attachments (chat/attachments.py), as the
    prompt holds them inside the message: one line, Attachments, in the budget view."""
    out = []
    for m in messages:
        if not m.get("attachments"):
            continue
        full, text = prompt_content(m), m["content"].strip()
        fenced = full[:len(full) - len(text)].rstrip() if text and full.endswith(text) else full
        if fenced:
            out.append(PromptShare(ATTACHMENTS, fenced, within=HISTORY_KEPT))
    return tuple(out)
