"""Chat histories: one plain JSON file per chat, in a folder per character:
`<user data>/histories/<character>/<chat id>.json`.

A chat is rewritten atomically (temp file + rename) after every message, so a crash
or a kill -9 in the middle of a reply loses at most that reply, and a file is never
left half-written.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from webui.chat import attachments
from webui.chat.authors_note import AuthorsNote, note_from_json
from webui.chat.budget import saved_budget
from webui.chat.group import Group, group_from_json
from webui.chat.lore import saved_names
from webui.chat.provenance import valid_record
from webui.chat.versions import read_versions
from webui.errors import ErrorKind, UserError
from webui.userdata.atomic import write_text_atomic
from webui.userdata.folders import InvalidName, check_name

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
TITLE_LENGTH = 48


class HistoryError(UserError, ValueError):
    """A chat cannot be found, read or written (one line)."""

    kind = ErrorKind.INVALID


@dataclass
class ChatHistory:
    id: str
    character: str
    title: str = "New chat"
    mode: str = "instruct"
    messages: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    titled_by_user: bool = False
    lorebooks: list[str] = field(default_factory=list)  # the standalone lorebooks it uses (chat/lore.py)
    group: Group | None = None  # a group chat's members and turn rule (chat/group.py)
    authors_note: AuthorsNote | None = None  # the chat's author's note (chat/authors_note.py)
    # A branch's source (chat/branches.py): {"id", "title", "message": index}; None otherwise.
    branched_from: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps({"version": FORMAT_VERSION, **asdict(self)}, ensure_ascii=False, indent=1)

    def auto_title(self) -> None:
        """Name a chat after its first message, until the user names it."""
        if self.titled_by_user:
            return
        # A message of attached files only is named after them.
        first = next((m["content"] or ", ".join(a["name"] for a in m.get("attachments", ()))
                      for m in self.messages if m["role"] == "user"), "")
        first = " ".join(first.split())
        if first:
            self.title = first if len(first) <= TITLE_LENGTH else first[:TITLE_LENGTH - 1] + "…"


@dataclass(frozen=True)
class ChatSummary:
    id: str
    title: str
    updated: float
    messages: int
    branched_from: str = ""  # the title of the chat this one branched from

    @property
    def label(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.updated))
        origin = f" · ⑂ from “{self.branched_from}”" if self.branched_from else ""
        return f"{self.title} · {when} · {self.messages} messages{origin}"


def new_chat_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _check_id(chat_id: str) -> str:
    if not isinstance(chat_id, str) or not _ID.match(chat_id):
        raise HistoryError(f"{str(chat_id)[:40]!r} is not a chat id")
    return chat_id


def _valid_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise ValueError("messages is not a list")
    out = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system") \
                or not isinstance(m.get("content"), str):
            raise ValueError("a message is not {role, content}")
        kept = {"role": m["role"], "content": m["content"]}
        if isinstance(m.get("reasoning_content"), str) and m["reasoning_content"]:
            kept["reasoning_content"] = m["reasoning_content"]  # a reasoning model's thinking
        calls = [c for c in m.get("tool_events") or () if _valid_tool_event(c)] \
            if isinstance(m.get("tool_events"), list) else []
        if calls:
            kept["tool_events"] = calls  # the tool calls of a reply (webui/ui/tools_panel.py)
        budget = saved_budget(m.get("context_budget"))
        if budget is not None:
            kept["context_budget"] = budget  # how the reply's context was spent (chat/budget.py)
        record = valid_record(m.get("provenance"))
        if record is not None:
            kept["provenance"] = record  # what made the reply (chat/provenance.py)
        read_versions(m, kept, _valid_tool_event)  # a reply's other versions (chat/versions.py)
        files = attachments.saved(m.get("attachments"))
        if files:
            kept["attachments"] = files  # files attached to a message (attachments.py)
        if m["role"] == "assistant" and isinstance(m.get("name"), str) and m["name"]:
            kept["name"] = m["name"]  # who spoke, in a group chat (chat/group.py)
        out.append(kept)
    return out


def _valid_tool_event(c: Any) -> bool:
    """A saved tool call as the Chat tab shows it; a malformed one is left out."""
    return isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("arguments"), dict) \
        and isinstance(c.get("status"), str) and isinstance(c.get("result"), str) \
        and isinstance(c.get("seconds"), (int, float)) and not isinstance(c.get("seconds"), bool)


def _valid_origin(origin: Any) -> dict[str, Any] | None:
    """A saved `branched_from` as this version reads it; None for anything else."""
    if not isinstance(origin, dict) or not isinstance(origin.get("id"), str) \
            or not isinstance(origin.get("title"), str):
        return None
    index = origin.get("message")
    return {"id": origin["id"], "title": origin["title"],
            "message": index if isinstance(index, int) and not isinstance(index, bool) else 0}


def history_from_data(data: Any, chat_id: str, character: str) -> ChatHistory:
    """A chat file's parsed JSON as a ChatHistory (what a saved chat and an imported
    Hearth export both go through). Raises ValueError/TypeError for a malformed one."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return ChatHistory(
        id=chat_id, character=character, title=str(data.get("title") or "Chat"),
        mode=str(data.get("mode") or "instruct"),
        messages=_valid_messages(data.get("messages", [])),
        created=float(data.get("created") or 0), updated=float(data.get("updated") or 0),
        titled_by_user=bool(data.get("titled_by_user")), lorebooks=saved_names(data.get("lorebooks")),
        group=group_from_json(data.get("group")), authors_note=note_from_json(data.get("authors_note")),
        branched_from=_valid_origin(data.get("branched_from")))


class HistoryStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        # The list is shown after every reply: parse a chat file again only when it
        # changed, not every long chat every time.
        self._summaries: dict[Path, tuple[tuple[int, int], ChatSummary]] = {}

    def _folder(self, character: str) -> Path:
        try:
            return self.root / check_name(character, "character name")
        except InvalidName as e:
            raise HistoryError(str(e)) from None

    def _path(self, character: str, chat_id: str) -> Path:
        return self._folder(character) / f"{_check_id(chat_id)}.json"

    def new(self, character: str, mode: str = "instruct", greeting: str = "") -> ChatHistory:
        """A fresh chat (not written until it has a message from the user)."""
        self._folder(character)
        history = ChatHistory(new_chat_id(), character, mode=mode)
        if greeting:
            history.messages.append({"role": "assistant", "content": greeting})
        return history

    def save(self, history: ChatHistory) -> None:
        history.updated = time.time()
        history.auto_title()
        path = self._path(history.character, history.id)
        with self._lock:
            write_text_atomic(path, history.to_json())

    def load(self, character: str, chat_id: str) -> ChatHistory:
        path = self._path(character, chat_id)
        try:
            return history_from_data(json.loads(path.read_text(encoding="utf-8")), chat_id, character)
        except FileNotFoundError:
            raise HistoryError(f"no chat {chat_id} for {character}") from None
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            raise HistoryError(f"chat file {path.name} is damaged: {e}") from None

    def list(self, character: str) -> list[ChatSummary]:
        """The character's chats, newest first. Damaged files are skipped (and logged)."""
        folder = self._folder(character)
        if not folder.is_dir():
            return []
        out = []
        for path in folder.glob("*.json"):
            if not _ID.match(path.stem):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # deleted meanwhile
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._summaries.get(path)
            if cached is None or cached[0] != stamp:
                try:
                    h = self.load(character, path.stem)
                except HistoryError as e:
                    log.warning("%s", e)
                    continue
                cached = (stamp, ChatSummary(h.id, h.title, h.updated, len(h.messages),
                                             (h.branched_from or {}).get("title", "")))
                self._summaries[path] = cached
            out.append(cached[1])
        return sorted(out, key=lambda s: (s.updated, s.id), reverse=True)

    def exists(self, history: ChatHistory) -> bool:
        return self._path(history.character, history.id).is_file()

    def rename(self, history: ChatHistory, title: str) -> None:
        title = " ".join((title or "").split())
        if not title:
            raise HistoryError("the new chat name is empty")
        history.title = title[:200]
        history.titled_by_user = True
        if self.exists(history) or history.messages:
            self.save(history)

    def delete(self, character: str, chat_id: str) -> None:
        path = self._path(character, chat_id)
        with self._lock:
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise HistoryError(f"no chat {chat_id} for {character}") from None
