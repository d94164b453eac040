"""The Chat tab's lorebooks: which of the user's standalone lorebooks this chat uses
(saved with the chat; the character's own book, from its card, always applies), and
importing a lorebook file (a card's character_book, a lorebook_v3 export or a
SillyTavern world info JSON) into `<user data>/lorebooks/`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from webui.characters.lorebook import MAX_LOREBOOK_BYTES
from webui.errors import UserError
from webui.ui.notices import notice


@dataclass
class LorePanel:
    books: gr.Dropdown
    upload: gr.File


def layout() -> LorePanel:
    with gr.Accordion("Lorebooks", open=False, elem_id="chat-lore"):
        books = gr.Dropdown([], value=[], multiselect=True, label="Lorebooks this chat uses",
                            info="Entries whose keys come up in the last messages go into the prompt "
                                 "(the character's own lorebook always does). The context view under "
                                 "each reply says which were inserted.", elem_id="chat-lorebooks")
        upload = gr.File(label="Import a lorebook (JSON: SillyTavern world info or a card's character_book)",
                         file_types=[".json"], type="filepath", elem_id="chat-lore-upload")
    return LorePanel(books, upload)


def books_update(conv: Any) -> Any:
    """The dropdown for this chat: the user's lorebooks, this chat's chosen ones."""
    names = conv.lorebooks.names() if conv.lorebooks is not None else []
    chosen = [n for n in conv.history.lorebooks if n in names]
    return gr.update(choices=names, value=chosen)


def wire(panel: LorePanel, state: gr.State, status: gr.Markdown, past: gr.Dropdown,
         demo: gr.Blocks | None) -> None:
    """`state` is the Chat tab's ChatState; `past` its past-chats list, which changes
    whenever the session's chat does (new, opened, deleted, another character)."""

    def refresh(chat_state):
        conv = chat_state.conversation
        return books_update(conv) if conv is not None else gr.skip()

    def choose(names, chat_state):
        conv = chat_state.conversation
        if conv is None:
            return notice("the chat is not ready yet; try again")
        conv.choose_lorebooks([n for n in names or [] if isinstance(n, str)])
        return f"Lorebooks for this chat: {', '.join(conv.history.lorebooks) or 'none'}."

    def imported(path, chat_state):
        conv = chat_state.conversation
        if not path:
            return gr.skip(), gr.skip(), gr.skip()
        file = Path(path)
        try:
            if conv is None or conv.lorebooks is None:
                raise UserError("the chat is not ready yet; try again")
            if file.stat().st_size > MAX_LOREBOOK_BYTES:
                raise UserError(f"a lorebook may be at most {MAX_LOREBOOK_BYTES >> 20} MiB")
            book = conv.lorebooks.import_file(file.read_bytes(), file.stem)
        except (UserError, OSError) as e:
            return notice(e, "Not imported: "), gr.skip(), None
        return (f"Imported lorebook **{book.name}** ({len(book.entries)} entries); choose it above to use it.",
                books_update(conv), None)

    panel.books.input(choose, [panel.books, state], [status], queue=False)
    panel.upload.upload(imported, [panel.upload, state], [status, panel.books, panel.upload], queue=False)
    past.change(refresh, [state], [panel.books], queue=False)
    panel.books.focus(refresh, [state], [panel.books], queue=False)  # the folder may have changed
    if demo is not None:
        demo.load(refresh, [state], [panel.books], queue=False)
