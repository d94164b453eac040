"""The Chat tab's group chat and author's note controls (a thin face over
Conversation.start_group, choose_speaker and set_authors_note; the rules are in
webui/chat/group.py and webui/chat/authors_note.py).

Group chat: pick two or more characters and a turn rule, Start; each reply's bubble
names its speaker. "Who speaks next" picks a member for the following replies (the
manual rule needs it). Author's note: text, depth and on/off of the chat shown,
saved in its file when changed. Both follow the chat shown: opening a past chat shows
its own group and note.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from loaders.fields import describe
from webui.chat.authors_note import AuthorsNote, make_note
from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.group import Group, make_group
from webui.errors import UserError
from webui.hearth import Hearth
from webui.ui.forms import component_for, components_for
from webui.ui.notices import notice

BY_RULE = ("by the group's rule", "")
USER_ERRORS = (UserError, ValueError)


@dataclass
class GroupPanel:
    members: gr.Dropdown
    turns: gr.Dropdown
    start: gr.Button
    speaker: gr.Dropdown
    note_text: gr.Textbox
    note_depth: gr.Slider
    note_enabled: gr.Checkbox
    shown_chat: gr.State  # the chat id whose group and note the controls show


def layout(hearth: Hearth) -> GroupPanel:
    specs = {s.name: s for s in describe(Group)}
    with gr.Accordion("Group chat", open=False, elem_id="chat-group"):
        with gr.Row(equal_height=True):
            members = gr.Dropdown(hearth.space().characters.names(), value=[], multiselect=True, label="Characters",
                                  info="Two or more, in their speaking order.", scale=3,
                                  elem_id="chat-group-members")
            turns = component_for(specs["turns"], prefix="chat-group")
            start = gr.Button("Start group chat", size="sm", scale=1, elem_id="chat-group-start")
        speaker = gr.Dropdown([BY_RULE], value="", label="Who speaks next",
                              info="A member picked here speaks until you pick another.",
                              elem_id="chat-group-speaker")
    with gr.Accordion("Author's note", open=False, elem_id="chat-authors-note"):
        note = components_for(AuthorsNote, prefix="authors-note")
    return GroupPanel(members, turns, start, speaker, note["text"], note["depth"], note["enabled"], gr.State(""))


def _speaker_choices(conv: Conversation) -> Any:
    group = conv.history.group
    names = list(group.members) if group is not None else []
    value = conv.chosen_speaker if conv.chosen_speaker in names else ""
    return gr.update(choices=[BY_RULE, *[(n, n) for n in names]], value=value)


def _note_values(conv: Conversation) -> tuple[Any, Any, Any]:
    note = conv.history.authors_note or AuthorsNote()
    return note.text, note.depth, note.enabled


def wire(hearth: Hearth, panel: GroupPanel, state: gr.State, opts: list, chatbot: gr.Chatbot, status: gr.Markdown,
         character: gr.Dropdown, past: gr.Dropdown, read_options: Callable[..., ChatOptions],
         shown: Callable[[Conversation], list], past_update: Callable[[Conversation], Any]) -> None:
    """`opts` are the Chat tab's option controls, `read_options` reads them, `state`
    holds the session's conversation; `shown` and `past_update` draw the chat and its
    past chats as the Chat tab does."""

    def get(state_, values) -> Conversation:
        return state_.get(hearth, read_options(*values))

    def start(members, turns, state_, *values):
        conv = get(state_, values)
        try:
            conv.start_group(make_group(members or [], turns), read_options(*values))
        except USER_ERRORS as e:
            return gr.skip(), notice(e), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        group = conv.history.group
        return (shown(conv), f"Group chat with {', '.join(group.members)} ({group.turns}).",
                gr.update(value=group.members[0]), past_update(conv), _speaker_choices(conv), conv.history.id)

    def choose(name, state_, *values):
        conv = get(state_, values)
        try:
            conv.choose_speaker(name or "")
        except USER_ERRORS as e:
            return notice(e)
        return f"{name} speaks next." if name else "The group's rule picks who speaks next."

    def save_note(text, depth, enabled, state_, *values):
        conv = get(state_, values)
        try:
            conv.set_authors_note(make_note(text, depth, enabled))
        except USER_ERRORS as e:
            return notice(e)
        return "Author's note saved with this chat." if (text or "").strip() else "Author's note cleared."

    def follow(shown_id, state_):
        """The controls show the group and note of the chat now shown (opened, new,
        deleted, the page loaded), and the characters there are now."""
        conv = state_.conversation
        if conv is None or conv.history.id == shown_id:
            return (gr.skip(),) * 7
        conv.chosen_speaker = ""
        group = conv.history.group
        names = hearth.space().characters.names()
        members = gr.update(choices=names, value=list(group.members)) if group else gr.update(choices=names)
        return (members, group.turns if group else gr.skip(), _speaker_choices(conv), *_note_values(conv),
                conv.history.id)

    panel.start.click(start, [panel.members, panel.turns, state, *opts],
                      [chatbot, status, character, past, panel.speaker, panel.shown_chat], queue=False)
    panel.speaker.input(choose, [panel.speaker, state, *opts], [status], queue=False)
    note_inputs = [panel.note_text, panel.note_depth, panel.note_enabled, state, *opts]
    panel.note_text.blur(save_note, note_inputs, [status], queue=False)
    panel.note_text.submit(save_note, note_inputs, [status], queue=False)
    panel.note_depth.release(save_note, note_inputs, [status], queue=False)
    panel.note_enabled.input(save_note, note_inputs, [status], queue=False)
    chatbot.change(follow, [panel.shown_chat, state],
                   [panel.members, panel.turns, panel.speaker, panel.note_text, panel.note_depth,
                    panel.note_enabled, panel.shown_chat],
                   queue=False, trigger_mode="always_last", show_progress="hidden")
