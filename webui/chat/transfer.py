"""Chats in and out of Hearth: export one chat as Hearth's JSON or as Markdown; import
a chat file from Hearth, text-generation-webui or SillyTavern.

The three import formats, as their own code writes them:
- Hearth: the chat file itself (`histories.py`), `{"version": 1, "title", "mode",
  "messages": [{"role", "content", ...}], ...}`.
- text-generation-webui (modules/chat.py, save_history/load_history):
  `{"internal": [[user, reply], ...], "visible": [...], "metadata": {"user_0":
  {"timestamp": ...}, ...}}`; `internal` holds the raw texts (`visible` is HTML-escaped),
  a greeting row is `["<|BEGIN-VISIBLE-CHAT|>", greeting]`, an empty user text means the
  row has none. Older files say `data`/`data_visible` instead.
- SillyTavern (src/endpoints/chats.js, public/script.js saveChat): JSON Lines; the first
  line is the header `{"user_name", "character_name", "create_date", "chat_metadata"}`,
  then one message a line: `{"name", "is_user", "is_system", "send_date", "mes",
  "swipes", "swipe_id", "extra", ...}`. `mes` is Markdown that SillyTavern renders with
  HTML allowed; an `is_system` message is one hidden from the prompt.

Every file is parsed completely before anything is written, and written as one atomic
file, so a bad file is one line of error and leaves nothing behind.
"""
from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui.chat.histories import ChatHistory, HistoryStore, history_from_data, new_chat_id
from webui.errors import ErrorKind, UserError

# The largest chat file read for an import. A long chat is a few MB (1000 turns of
# 2 kB each is 2 MB of JSON); 32 MiB leaves room for pasted documents while bounding
# what a bad upload can make the server read and parse.
MAX_IMPORT_BYTES = 32 << 20
FALLBACK_CHARACTER = "Assistant"  # as Conversation files chats when no character exists
FORMATS = ("json", "markdown")  # what a chat exports as
_ROLES = ("user", "assistant", "system")
_TGW_GREETING = "<|BEGIN-VISIBLE-CHAT|>"


class TransferError(UserError, ValueError):
    """A chat file that cannot be imported, or a chat that cannot be exported (one line)."""

    kind = ErrorKind.INVALID


@dataclass
class ImportedChat:
    """A chat read from a file, not yet saved."""
    format: str  # "Hearth", "text-generation-webui" or "SillyTavern"
    messages: list[dict[str, Any]]
    character: str | None = None  # the character the file names, if it names one
    title: str | None = None
    mode: str = "chat"
    created: float | None = None
    left_out: int = 0  # messages not imported (SillyTavern's hidden ones)
    source: dict[str, Any] | None = None  # a Hearth file's own data (kept as histories.py reads it)


# --- reading --------------------------------------------------------------------------
def read_chat_file(path: str | Path) -> bytes:
    """The file's bytes, refusing one over MAX_IMPORT_BYTES before reading it all."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_IMPORT_BYTES + 1)
    except FileNotFoundError:
        raise TransferError(f"no file {path.name}", kind=ErrorKind.NOT_FOUND) from None
    except IsADirectoryError:
        raise TransferError(f"{path.name} is a folder, not a chat file") from None
    except OSError as e:
        raise TransferError(f"cannot read {path.name}: {e.strerror or e}") from None
    if len(data) > MAX_IMPORT_BYTES:
        raise TransferError(f"{path.name} is larger than {MAX_IMPORT_BYTES >> 20} MiB, the most a chat "
                            "file may be", kind=ErrorKind.TOO_LARGE)
    return data


def parse_chat(data: bytes, filename: str = "the file") -> ImportedChat:
    """Which format the bytes are in, and the chat they hold."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TransferError(f"{filename} is not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise TransferError(f"{filename} is empty")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as e:
        whole, error = None, e
    else:
        error = None
    if isinstance(whole, dict):
        if "internal" in whole or "data" in whole:
            return _textgen(whole, filename)
        if "messages" in whole:
            return _hearth(whole, filename)
        if "user_name" in whole or "character_name" in whole:
            return _sillytavern(text, filename)  # a SillyTavern chat of the header alone
        raise TransferError(f"{filename} is JSON but no chat Hearth knows (Hearth, text-generation-webui "
                            "or SillyTavern)")
    if whole is not None:
        raise TransferError(f"{filename} is JSON but not an object: no chat Hearth knows")
    first = text.lstrip().split("\n", 1)[0]
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        header = None
    if isinstance(header, dict):
        return _sillytavern(text, filename)
    assert error is not None
    raise TransferError(f"{filename} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")


def _hearth(data: dict, filename: str) -> ImportedChat:
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise TransferError(f"{filename}: messages is not a list")
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict):
            raise TransferError(f"{filename}: message {i} is not an object")
        if m.get("role") not in _ROLES:
            raise TransferError(f"{filename}: message {i} has the role {str(m.get('role'))[:20]!r}; a chat "
                                f"holds only {', '.join(_ROLES)}")
        if not isinstance(m.get("content"), str):
            raise TransferError(f"{filename}: message {i} has no text (content)")
    character = data.get("character")
    return ImportedChat("Hearth", messages, character if isinstance(character, str) else None,
                        str(data.get("title") or "") or None, str(data.get("mode") or "instruct"),
                        _number(data.get("created")), source=data)


def _textgen(data: dict, filename: str) -> ImportedChat:
    rows = data["internal"] if "internal" in data else data["data"]
    if not isinstance(rows, list):
        raise TransferError(f"{filename}: text-generation-webui's internal history is not a list")
    messages: list[dict[str, Any]] = []
    greeting = False
    for i, row in enumerate(rows, 1):
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(t, str) for t in row)):
            raise TransferError(f"{filename}: row {i} of the history is not [user text, reply]")
        user, reply = row
        if user == _TGW_GREETING:
            greeting = True
        elif user:
            messages.append({"role": "user", "content": user})
        if reply:
            messages.append({"role": "assistant", "content": reply})
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    return ImportedChat("text-generation-webui", messages, mode="chat" if greeting else "instruct",
                        created=_textgen_time(metadata))


def _textgen_time(metadata: dict) -> float | None:
    """The first message's timestamp (get_current_timestamp: '%b %d, %Y %H:%M')."""
    for key in ("assistant_0", "user_0", "user_1"):
        stamp = metadata.get(key, {}).get("timestamp") if isinstance(metadata.get(key), dict) else None
        if isinstance(stamp, str) and stamp:
            try:
                return time.mktime(time.strptime(stamp, "%b %d, %Y %H:%M"))
            except ValueError:
                return None
    return None


def _sillytavern(text: str, filename: str) -> ImportedChat:
    lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    items = []
    for n, line in lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise TransferError(f"{filename}: line {n} is not JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(item, dict):
            raise TransferError(f"{filename}: line {n} is not a JSON object")
        items.append((n, item))
    (_, header), body = items[0], items[1:]
    if not ("user_name" in header or "character_name" in header):
        raise TransferError(f"{filename}: line 1 is not a SillyTavern chat header (user_name, character_name)")
    messages: list[dict[str, Any]] = []
    hidden = 0
    for n, item in body:
        mes, is_user = item.get("mes"), item.get("is_user")
        if not isinstance(mes, str) or not isinstance(is_user, bool):
            raise TransferError(f"{filename}: line {n} is not a SillyTavern message (mes, is_user)")
        if item.get("is_system"):
            hidden += 1  # hidden from the prompt in SillyTavern: not part of the conversation
            continue
        content = strip_html(mes).strip()
        if content:
            messages.append({"role": "user" if is_user else "assistant", "content": content})
    character = header.get("character_name")
    return ImportedChat("SillyTavern", messages, character if isinstance(character, str) and character else None,
                        created=_sillytavern_time(header.get("create_date")), left_out=hidden)


_ST_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2}) ?@(\d{1,2})h ?(\d{1,2})m ?(\d{1,2})s")


def _sillytavern_time(value: Any) -> float | None:
    """humanizedISO8601DateTime (src/util.js): '2024-9-28 @01h 02m 36s 123ms'."""
    match = _ST_DATE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in match.groups())
    try:
        return time.mktime((y, mo, d, h, mi, s, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# SillyTavern shows `mes` as HTML (its Markdown allows tags). Hearth's chats are plain
# text the model reads, so markup is taken off and what it showed is kept: the text
# inside tags, a line for <br>, </p> and </div>, entities decoded. Scripts and styles
# showed nothing and are dropped. Only real HTML element names count as tags, so
# "<3" or "a <grin>" typed in a message stays.
_HTML_TAGS = (
    "a|abbr|b|bdi|bdo|big|blockquote|br|center|code|del|details|div|em|font|h[1-6]|hr|i|img|ins|kbd|li|mark|"
    "ol|p|pre|q|s|small|span|strike|strong|sub|summary|sup|table|tbody|td|th|thead|tr|tt|u|ul|wbr")
_DROPPED_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_LINE_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|li|tr|h[1-6])\s*>", re.IGNORECASE)
_TAG = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def strip_html(text: str) -> str:
    """A SillyTavern message's text without its HTML markup (see above)."""
    if "<" not in text and "&" not in text:
        return text
    out = _DROPPED_BLOCK.sub("", text)
    out = _LINE_BREAK.sub("\n", out)
    out = _TAG.sub("", out)
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), out)


# --- saving -----------------------------------------------------------------------------
def choose_character(imported: ImportedChat, known: Sequence[str], character: str | None = None,
                     fallback: str | None = None) -> str:
    """Whose chat it becomes: the one asked for, else the file's own if it exists here,
    else `fallback` (the Chat tab's character), else the first character."""
    if not known:
        return FALLBACK_CHARACTER  # no character at all: where Conversation keeps chats then
    wanted = character or (imported.character if imported.character in known else None) or fallback
    if wanted is None and imported.character:
        raise TransferError(f"the chat is with {imported.character[:40]!r}, who is not a character here: "
                            f"choose one of {', '.join(known)}", kind=ErrorKind.NOT_FOUND)
    wanted = wanted or known[0]
    if wanted not in known:
        raise TransferError(f"no character {wanted[:40]!r}: choose one of {', '.join(known)}",
                            kind=ErrorKind.NOT_FOUND)
    return wanted


def import_chat(store: HistoryStore, imported: ImportedChat, character: str) -> ChatHistory:
    """Save the imported chat as a new chat of `character` (one atomic file)."""
    chat_id = new_chat_id()
    while store.exists(ChatHistory(chat_id, character)):
        chat_id = new_chat_id()
    if imported.source is not None:
        try:
            history = history_from_data(imported.source, chat_id, character)
        except (ValueError, TypeError) as e:
            raise TransferError(f"not a Hearth chat: {e}") from None
    else:
        history = ChatHistory(chat_id, character, mode=imported.mode, messages=imported.messages)
        if imported.title:
            history.title, history.titled_by_user = imported.title, True
    if imported.created:
        history.created = imported.created
    if not history.messages:
        raise TransferError(f"the {imported.format} chat has no messages: nothing imported")
    store.save(history)
    return history


def import_file(store: HistoryStore, path: str | Path, known: Sequence[str], character: str | None = None,
                fallback: str | None = None) -> tuple[ChatHistory, ImportedChat]:
    """Read, check and save a chat file; (the saved chat, what was read)."""
    imported = parse_chat(read_chat_file(path), Path(path).name)
    saved = import_chat(store, imported, choose_character(imported, known, character, fallback))
    return saved, imported


# --- exporting --------------------------------------------------------------------------
def export_json(history: ChatHistory) -> str:
    """Hearth's own chat file: imports back unchanged."""
    return history.to_json()


def export_markdown(history: ChatHistory, user_name: str = "You") -> str:
    """A readable copy: the title, who and when, then each message under its speaker."""
    speaker = {"user": user_name, "assistant": history.character, "system": "System"}
    if history.mode == "instruct":
        speaker["assistant"] = "Assistant"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(history.created or history.updated))
    lines = [f"# {_one_line(history.title)}", "", f"*{history.character} · {history.mode} · {when}*", ""]
    for m in history.messages:
        lines += [f"**{speaker.get(m['role'], m['role'])}:**", ""]
        if m.get("reasoning_content"):
            lines += ["<details><summary>Thinking</summary>", "", m["reasoning_content"].strip(), "",
                      "</details>", ""]
        lines += [m["content"].strip(), ""]
    return "\n".join(lines)


def export_text(history: ChatHistory, fmt: str, user_name: str = "You") -> str:
    if fmt == "json":
        return export_json(history)
    if fmt == "markdown":
        return export_markdown(history, user_name)
    raise TransferError(f"no export format {fmt[:20]!r}: choose one of {', '.join(FORMATS)}")


def export_filename(history: ChatHistory, fmt: str) -> str:
    """A file name for the export: the title, made safe, and the chat id."""
    stem = re.sub(r"[^\w\- ]+", "", history.title, flags=re.UNICODE).strip()[:40] or "chat"
    return f"{stem} {history.id}.{'md' if fmt == 'markdown' else 'json'}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
