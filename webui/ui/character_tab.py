"""The Character tab: create and edit characters (YAML in characters/), import a V2
character card (PNG) and export one. A bad upload is refused with one line and
writes nothing."""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from webui.characters.cards import MAX_AVATAR_SIDE, MAX_CARD_BYTES, PNG_SIGNATURE, is_v3, write_card
from webui.characters.character import Character, CharacterError
from webui.errors import UserError
from webui.hearth import Hearth
from webui.ui import character_lore
from webui.ui.avatars import avatar_file
from webui.ui.notices import notice


@dataclass
class CharacterTab:
    choice: gr.Dropdown
    new: gr.Button
    name: gr.Textbox
    greeting: gr.Textbox
    context: gr.Textbox
    personality: gr.Textbox
    scenario: gr.Textbox
    example_dialogue: gr.Textbox
    avatar: gr.Image
    save: gr.Button
    delete: gr.Button
    upload: gr.File
    export: gr.Button
    export_file: gr.File
    status: gr.Markdown
    loaded: gr.State  # the Character being edited (keeps a card's extra fields)
    lore: character_lore.CharacterLorePanel | None = None  # its lorebooks (character_lore.py)

    @property
    def fields(self) -> list:
        return [self.name, self.greeting, self.context, self.personality, self.scenario,
                self.example_dialogue]


def layout(hearth: Hearth) -> CharacterTab:
    names = hearth.space().characters.names()
    with gr.Row(equal_height=True):
        choice = gr.Dropdown(names, value=None, label="Character", scale=4, elem_id="character-choice")
        new = gr.Button("New character", size="sm", scale=1, elem_id="character-new")
    with gr.Row():
        with gr.Column(scale=3):
            name = gr.Textbox(label="Name", elem_id="character-name")
            greeting = gr.Textbox(label="Greeting (the first message of a new chat)", lines=3,
                                  elem_id="character-greeting")
            context = gr.Textbox(label="Persona / context: who the character is", lines=5,
                                 elem_id="character-context",
                                 info="{{char}} and {{user}} stand for the character's name and yours.")
            personality = gr.Textbox(label="Personality", elem_id="character-personality")
            scenario = gr.Textbox(label="Scenario", lines=2, elem_id="character-scenario")
            example_dialogue = gr.Textbox(label="Example dialogue", lines=4, elem_id="character-examples",
                                          placeholder="{{user}}: Hi!\n{{char}}: Hello there.")
        with gr.Column(scale=1):
            avatar = gr.Image(label="Avatar", type="filepath", format="png", height=220,
                              elem_id="character-avatar")
    with gr.Row():
        save = gr.Button("Save", variant="primary", elem_id="character-save")
        delete = gr.Button("Delete", variant="stop", elem_id="character-delete")
    status = gr.Markdown("", elem_id="character-status")
    with gr.Accordion("Character cards (V2 and V3 PNG)", open=True):
        with gr.Row():
            upload = gr.File(label="Import a card", file_types=[".png"], type="filepath",
                             elem_id="character-import")
            with gr.Column():
                export = gr.Button("Export as card", elem_id="character-export")
                export_file = gr.File(label="Card", interactive=False, elem_id="character-export-file")
    return CharacterTab(choice, new, name, greeting, context, personality, scenario, example_dialogue,
                        avatar, save, delete, upload, export, export_file, status, gr.State(None),
                        lore=character_lore.layout())


def _png_bytes(path: str | None) -> bytes | None:
    if not path:
        return None
    data = Path(path).read_bytes()
    if data.startswith(PNG_SIGNATURE):
        return data  # the store checks its header before keeping it
    from PIL import Image  # another format from the image box: store PNG

    image = Image.open(io.BytesIO(data))  # reads the header only; decoding waits for save()
    width, height = image.size
    if not (width <= MAX_AVATAR_SIDE and height <= MAX_AVATAR_SIDE):
        raise CharacterError(f"the avatar is {width:,}x{height:,} pixels; at most "
                             f"{MAX_AVATAR_SIDE}x{MAX_AVATAR_SIDE} are allowed")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def wire(hearth: Hearth, tab: CharacterTab, chat_character: gr.Dropdown,
         demo: gr.Blocks | None = None) -> None:
    def store():  # the logged-in user's characters
        return hearth.space().characters

    def show(name: str):
        if not name:
            return [None, *[""] * 6, None, ""]
        try:
            c = store().load(name)
        except (UserError, OSError) as e:
            return [gr.skip()] * 8 + [notice(e)]
        return [c, c.name, c.greeting, c.context, c.personality, c.scenario, c.example_dialogue,
                avatar_file(c), ""]

    def lists(selected: str | None):
        names = store().names()
        return gr.update(choices=names, value=selected), gr.update(choices=names)

    def save(loaded: Character | None, name, greeting, context, personality, scenario, examples, avatar):
        card = loaded.card if loaded is not None else {}
        character = Character(name=name or "", greeting=greeting or "", context=context or "",
                              personality=personality or "", scenario=scenario or "",
                              example_dialogue=examples or "", card=card)
        if loaded is not None and loaded.name == (name or "").strip():
            character.avatar_path = loaded.avatar_path
        try:
            saved = store().save(character, _png_bytes(avatar))
        except (UserError, OSError, ValueError) as e:  # Pillow refuses some images with ValueError
            return [gr.skip()] * 3 + [notice(e)]
        return [saved, *lists(saved.name), f"Saved **{saved.name}**."]

    def delete(loaded: Character | None):
        if loaded is None:
            return [gr.skip()] * 3 + ["Choose a character first."]
        try:
            store().delete(loaded.name)
        except (UserError, OSError) as e:
            return [gr.skip()] * 3 + [notice(e)]
        return [None, *lists(None), f"Deleted **{loaded.name}**."]

    def upload(path: str | None):
        """Import a card; on success the new character is shown, ready to edit."""
        if not path:
            return [gr.skip()] * 3 + [gr.skip()] * 8 + [""]
        try:
            if os.path.getsize(path) > MAX_CARD_BYTES:
                raise CharacterError(f"the file is larger than {MAX_CARD_BYTES >> 20} MiB, the most a "
                                     "character card may be")
            saved = store().import_card(Path(path).read_bytes())
        except (UserError, OSError) as e:
            return [gr.skip(), gr.skip(), None] + [gr.skip()] * 8 + [notice(e, "Not imported: ")]
        shown = show(saved.name)
        return [*lists(saved.name), None, *shown[:-1], f"Imported **{saved.name}**."]

    def export(loaded: Character | None):
        if loaded is None:
            return gr.skip(), "Choose a character first."
        avatar = loaded.avatar_path.read_bytes() if loaded.avatar_path else None
        try:
            card = write_card(loaded, avatar)
        except UserError as e:  # a damaged avatar file
            return gr.skip(), notice(e)
        folder = Path(tempfile.mkdtemp(prefix="hearth-card-"))
        path = folder / f"{loaded.name}.png"
        path.write_bytes(card)
        return str(path), f"Exported **{loaded.name}** as a {'V3' if is_v3(loaded) else 'V2'} card."

    outputs = [tab.loaded, *tab.fields, tab.avatar, tab.status]
    tab.choice.input(show, [tab.choice], outputs, queue=False)
    tab.new.click(lambda: [None, *[""] * 6, None, "A new character: fill it in and Save.", None], None,
                  [*outputs, tab.choice], queue=False)
    tab.save.click(save, [tab.loaded, *tab.fields, tab.avatar],
                   [tab.loaded, tab.choice, chat_character, tab.status], queue=False)
    tab.delete.click(delete, [tab.loaded], [tab.loaded, tab.choice, chat_character, tab.status], queue=False)
    tab.upload.upload(upload, [tab.upload], [tab.choice, chat_character, tab.upload, *outputs],
                      queue=False)
    tab.export.click(export, [tab.loaded], [tab.export_file, tab.status], queue=False)
    character_lore.wire(hearth, tab.lore, tab.loaded, tab.status)

    def on_load():
        """A new page opens the character the chat was last with."""
        name = hearth.space().settings.load().character
        names = store().names()
        if name not in names:
            return [gr.update(choices=names, value=None), *[gr.skip()] * len(outputs)]
        return [gr.update(choices=names, value=name), *show(name)]

    if demo is not None:
        demo.load(on_load, None, [tab.choice, *outputs], queue=False)
