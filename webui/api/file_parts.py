"""OpenAI's file content parts in a chat message,
`{"type": "file", "file": {"filename": "notes.md", "file_data": "data:...;base64,..."}}`:
each file is read by the chat core's attachments (text, Markdown, code, PDF; the same
limits as the Chat tab's, from the user's chat settings) and put into its message
fenced as quoted data, the message's own text last. A file that cannot be read is a
one-line 400 (413 past a limit), and nothing is generated.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from webui.api.errors import APIError
from webui.api.schemas import ChatMessage, FilePart
from webui.chat.attachments import Attachment, AttachmentLimits, add, attachment_of, prompt_content


def files_of(m: ChatMessage) -> list[FilePart]:
    return [p for p in m.content if isinstance(p, FilePart)] if isinstance(m.content, list) else []


def has_files(messages: Sequence[ChatMessage]) -> bool:
    return any(files_of(m) for m in messages)


def file_bytes(part: FilePart, where: str) -> tuple[str, bytes]:
    f = part.file
    if f.file_id is not None:
        raise APIError(400, f"{where}: file_id is not supported (Hearth keeps no uploaded files); send file_data",
                       param=where, code="invalid_value")
    if not f.file_data:
        raise APIError(400, f"{where}: file_data is missing", param=where, code="invalid_value")
    data = f.file_data
    if data.startswith("data:"):
        header, sep, data = data.partition(",")
        if not sep or not header.endswith(";base64"):
            raise APIError(400, f"{where}: file_data must be a base64 data: URL", param=where, code="invalid_value")
    try:
        return f.filename or "file", base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{where}: file_data is not valid base64", param=where, code="invalid_value") from None


def with_files(request: Sequence[ChatMessage], messages: list[dict[str, Any]],
               limits: AttachmentLimits) -> list[dict[str, Any]]:
    """The core's messages with each user message's files read into its content.
    Reads and parses files: run it off the event loop."""
    out = []
    for i, (m, message) in enumerate(zip(request, messages, strict=True)):
        parts = files_of(m)
        if parts:
            if m.role != "user":
                raise APIError(400, f"messages[{i}]: only a user message may carry files", param=f"messages[{i}]",
                               code="invalid_value")
            files: list[Attachment] = []
            for j, part in enumerate(parts):
                name, data = file_bytes(part, f"messages[{i}].content[{j}]")
                files = add(files, attachment_of(data, name, limits), limits)
            message = {**message, "content": prompt_content({"content": message["content"],
                                                             "attachments": [a.to_dict() for a in files]})}
        out.append(message)
    return out
