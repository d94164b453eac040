"""Impersonate: the model writes the user's next message (for the user to edit and send).

The request is the chat with the user's draft (possibly empty) as a last, open user
message; prompts.py renders it with that turn left open, the way Continue leaves a reply
open, so the model goes on in the user's voice and the template's end-of-turn markers
(or, in chat mode, the next "Name:") end it."""
from __future__ import annotations

import dataclasses

from webui.chat.prompts import ChatRequest


def impersonation(request: ChatRequest, draft: str) -> ChatRequest:
    """`request` (the chat as it is) asking for the user's next message after `draft`."""
    messages = [dict(m) for m in request.messages] + [{"role": "user", "content": draft}]
    return dataclasses.replace(request, messages=messages, continue_last=False, impersonate=True)
