"""The Chat tab's search across all chats (a box over the chat list; each hit shows its
title, character and the words around it, and opens that chat when clicked), and the
chat's export (Hearth JSON, Markdown) and import (Hearth, text-generation-webui,
SillyTavern). The work is the core's (webui/chat/search.py, transfer.py through
Hearth); this module reads the controls and shows the result."""
from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.transfer import export_filename, export_text
from webui.errors import UserError
from webui.hearth import Hearth
from webui.ui.notices import notice

USER_ERRORS = (UserError, ValueError)


@dataclass
class ChatSearch:
    query: gr.Textbox
    results: gr.Radio


@dataclass
class ChatTransfer:
    export_json: gr.Button
    export_markdown: gr.Button
    export_file: gr.File
    upload: gr.File


def layout() -> ChatSearch:
    """The search box and its hits (hidden until there is a query)."""
    query = gr.Textbox(placeholder="Search all chats: words in a title or a message", show_label=False,
                       elem_id="chat-search", max_lines=1)
    results = gr.Radio([], value=None, label="Chats found", visible=False, elem_id="chat-search-results")
    return ChatSearch(query, results)


def transfer_layout() -> ChatTransfer:
    """Export and import, for the "This chat" section."""
    with gr.Row(equal_height=True):
        export_json = gr.Button("Export JSON", size="sm", elem_id="chat-export-json")
        export_markdown = gr.Button("Export Markdown", size="sm", elem_id="chat-export-markdown")
        export_file = gr.File(label="Exported chat", interactive=False, elem_id="chat-export-file", height=80)
        upload = gr.File(label="Import a chat (Hearth .json, text-generation-webui .json, SillyTavern .jsonl)",
                         file_types=[".json", ".jsonl"], type="filepath", elem_id="chat-import", height=80)
    return ChatTransfer(export_json, export_markdown, export_file, upload)


def found(hearth: Hearth, query: str) -> Any:
    """The hits of a query as the results list's update."""
    if not (query or "").strip():
        return gr.update(choices=[], value=None, visible=False)
    hits = hearth.search_chats(query)
    label = f"{len(hits)} chat{'s' if len(hits) != 1 else ''} found" if hits else "No chat holds all these words"
    return gr.update(choices=[(h.label, h.key) for h in hits], value=None, label=label, visible=True)


def exported(conv: Conversation, fmt: str, user_name: str) -> tuple[Any, str]:
    """(the file for the download box, the status line)."""
    if not any(m["role"] == "user" for m in conv.messages):
        return gr.skip(), "Nothing to export yet: this chat has no message from you."
    history = conv.history
    try:
        text = export_text(history, fmt, user_name)
    except USER_ERRORS as e:
        return gr.skip(), notice(e, "Not exported: ")
    path = Path(tempfile.mkdtemp(prefix="hearth-chat-")) / export_filename(history, fmt)
    path.write_text(text, encoding="utf-8")
    return str(path), f"Exported “{history.title}” as {'Markdown' if fmt == 'markdown' else 'JSON'}."


def wire(hearth: Hearth, search: ChatSearch, transfer: ChatTransfer, *, state: gr.State, options: list,
         read_options: Callable[..., ChatOptions], shown: Callable[[Conversation], list],
         past_update: Callable[[Conversation], Any], character: gr.Dropdown, chatbot: gr.Chatbot,
         status: gr.Markdown, past: gr.Dropdown, title: gr.Textbox) -> None:
    """`options` are the Chat tab's option inputs (read by `read_options`); `shown` and
    `past_update` are its views of a conversation."""

    def open_chat(conv: Conversation, opts: ChatOptions, who: str, chat_id: str, done: str):
        """Switch this session to `who`'s chat `chat_id`: (character, chatbot, status, past, title)."""
        try:
            conv.new_chat(dataclasses.replace(opts, character=who))
            conv.open(chat_id)
        except USER_ERRORS as e:
            return gr.skip(), shown(conv), notice(e), past_update(conv), gr.skip()
        shown_who = conv.character.name if conv.character else gr.skip()
        return shown_who, shown(conv), done.format(title=conv.history.title), past_update(conv), conv.history.title

    def open_hit(key: str, chat_state, *values):
        if not key or "/" not in key:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        who, chat_id = key.rsplit("/", 1)
        opts = read_options(*values)
        conv = chat_state.get(hearth, opts)
        return open_chat(conv, opts, who, chat_id, "Opened “{title}”.")

    def upload(path: str | None, chat_state, *values):
        if not path:
            return (gr.skip(),) * 6
        opts = read_options(*values)
        conv = chat_state.get(hearth, opts)
        try:
            saved, imported = hearth.import_chat(path, fallback=opts.character or None)
        except USER_ERRORS as e:
            return None, gr.skip(), gr.skip(), notice(e, "Not imported: "), gr.skip(), gr.skip()
        left = f", {imported.left_out} hidden messages left out" if imported.left_out else ""
        done = (f"Imported “{{title}}” from {imported.format} ({len(saved.messages)} messages{left}), "
                f"a chat with {saved.character}.")
        return (None, *open_chat(conv, opts, saved.character, saved.id, done))

    def export(fmt: str):
        def handler(chat_state, *values):
            opts = read_options(*values)
            return exported(chat_state.get(hearth, opts), fmt, opts.user_name)
        return handler

    search.query.input(lambda q: found(hearth, q), [search.query], [search.results], trigger_mode="always_last",
                       concurrency_limit=None, show_progress="hidden")
    search.query.submit(lambda q: found(hearth, q), [search.query], [search.results], concurrency_limit=None,
                        show_progress="hidden")
    opened = [character, chatbot, status, past, title]
    search.results.input(open_hit, [search.results, state, *options], opened, queue=False)
    transfer.upload.upload(upload, [transfer.upload, state, *options], [transfer.upload, *opened], queue=False)
    transfer.export_json.click(export("json"), [state, *options], [transfer.export_file, status], queue=False)
    transfer.export_markdown.click(export("markdown"), [state, *options], [transfer.export_file, status],
                                   queue=False)
