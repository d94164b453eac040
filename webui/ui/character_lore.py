"""The Character tab's lorebooks: the character's own (from its card: how many entries)
and the user's standalone lorebooks chosen for it, saved with the character; every chat
with it then scans them (chat/lore.py), besides those the chat chose itself."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from webui.characters.character import Character
from webui.characters.lorebook import character_lorebook
from webui.chat.lore import character_lorebook_names, with_lorebook_names
from webui.errors import UserError
from webui.hearth import Hearth
from webui.ui.notices import notice


@dataclass
class CharacterLorePanel:
    own: gr.Markdown
    books: gr.Dropdown
    use: gr.Button


def layout() -> CharacterLorePanel:
    with gr.Accordion("Lorebooks", open=False, elem_id="character-lore"):
        own = gr.Markdown("", elem_id="character-lore-own")
        with gr.Row(equal_height=True):
            books = gr.Dropdown([], value=[], multiselect=True, scale=4, elem_id="character-lorebooks",
                                label="Standalone lorebooks for every chat with this character",
                                info="Import lorebooks in the Chat tab (Lorebooks); they live in "
                                     "user_data/lorebooks/.")
            use = gr.Button("Use for this character", size="sm", scale=1, elem_id="character-lore-use")
    return CharacterLorePanel(own, books, use)


def _own_line(character: Character) -> str:
    try:
        book = character_lorebook(character.card, character.name)
    except UserError as e:
        return notice(e, "Its card's lorebook cannot be used: ")
    if book is None:
        return "Its card carries no lorebook."
    return f"Its card's lorebook: {len(book.entries)} entries, always scanned."


def wire(hearth: Hearth, panel: CharacterLorePanel, loaded: gr.State, status: gr.Markdown) -> None:
    def show(character: Character | None):
        names = hearth.lorebooks().names()
        if character is None:
            return "", gr.update(choices=names, value=[])
        chosen = [n for n in character_lorebook_names(character) if n in names]
        return _own_line(character), gr.update(choices=names, value=chosen)

    def use(character: Character | None, names):
        if character is None:
            return gr.skip(), "Choose a character first."
        try:
            saved = hearth.space().characters.save(with_lorebook_names(character, names or []))
        except UserError as e:
            return gr.skip(), notice(e)
        chosen = ", ".join(character_lorebook_names(saved)) or "none"
        return saved, f"**{saved.name}** uses these lorebooks in every chat: {chosen}."

    loaded.change(show, [loaded], [panel.own, panel.books], queue=False)
    panel.books.focus(lambda c: show(c)[1], [loaded], [panel.books], queue=False)
    panel.use.click(use, [loaded, panel.books], [loaded, status], queue=False)
