"""The chat's character's avatar beside its messages (the Chatbot's bot avatar): its
card's picture, or a V3 card's main icon, as stored with the character. An avatar that
cannot be shown is one line in the status, and the chat goes on without it."""
from __future__ import annotations

import gradio as gr

from webui.characters.cards import avatar_problem
from webui.errors import UserError
from webui.hearth import Hearth
from webui.ui.avatars import avatar_file
from webui.ui.notices import notice


def wire(hearth: Hearth, character: gr.Dropdown, chatbot: gr.Chatbot, status: gr.Markdown,
         demo: gr.Blocks | None) -> None:
    def show(name: str | None):
        try:
            chosen = hearth.space().characters.load(name) if name else None
        except UserError:
            return gr.update(avatar_images=(None, None)), gr.skip()  # the chat says why, itself
        path = avatar_file(chosen)
        if path is None and chosen is not None and chosen.avatar_path is not None:
            try:
                with open(chosen.avatar_path, "rb") as f:
                    problem = avatar_problem(f.read(24)) or "it cannot be read"
            except OSError as e:
                problem = e.strerror or "it cannot be read"
            return gr.update(avatar_images=(None, None)), notice(f"{chosen.name}'s avatar is not shown: {problem}")
        return gr.update(avatar_images=(None, path)), gr.skip()

    character.change(show, [character], [chatbot, status], queue=False)
    if demo is not None:
        demo.load(show, [character], [chatbot, status], queue=False)
