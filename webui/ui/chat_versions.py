"""The Chat tab's reply versions, Reproduce, Impersonate and Branch, and the details of
what made a reply.

A row under the chat: ◀ / ▶ switch the last reply's versions (Regenerate and Reproduce
add them), "Reply 2 / 3" says which is shown, Reproduce makes the last reply again from
its record, Impersonate writes your next message into the input box, Branch starts a
new chat from the message you last clicked (the last one if none). "Reply details"
shows the record of the clicked reply (else the last one). The work is the core's
(webui/chat/versions.py, provenance.py, branches.py through Conversation); this module
reads the controls and shows the result.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from loaders.params import GenerationParams
from webui.chat import provenance, versions
from webui.chat.conversation import Conversation
from webui.chat.template_fallback import strip_markers
from webui.errors import UserError
from webui.hearth import Hearth
from webui.runtime.generation import Failed
from webui.ui.forms import values_to
from webui.ui.notices import notice
from webui.ui.streaming import end_status, stream_job

USER_ERRORS = (UserError, ValueError)


@dataclass
class VersionsPanel:
    previous: gr.Button
    shown: gr.Markdown  # "Reply 2 / 3"
    next: gr.Button
    reproduce: gr.Button
    impersonate: gr.Button
    branch: gr.Button
    details: gr.Markdown  # the record of a reply
    selected: gr.State  # the history index of the message last clicked, or None


def layout() -> VersionsPanel:
    with gr.Row(equal_height=True):
        previous = gr.Button("◀", size="sm", min_width=40, scale=0, elem_id="chat-version-prev")
        shown = gr.Markdown("", elem_id="chat-version")
        nxt = gr.Button("▶", size="sm", min_width=40, scale=0, elem_id="chat-version-next")
        reproduce = gr.Button("Reproduce", size="sm", elem_id="chat-reproduce")
        impersonate = gr.Button("Impersonate", size="sm", elem_id="chat-impersonate")
        branch = gr.Button("Branch here", size="sm", elem_id="chat-branch")
    with gr.Accordion("ⓘ Reply details: what made it", open=False, elem_id="chat-reply-details"):
        details = gr.Markdown("", elem_id="chat-reply-info")
    return VersionsPanel(previous, shown, nxt, reproduce, impersonate, branch, details, gr.State(None))


def version_line(conv: Conversation) -> str:
    """"Reply 2 / 3" for the chat's last reply; empty when the chat does not end with one."""
    try:
        message = versions.last_reply(conv.messages)
    except versions.VersionError:
        return ""
    return f"Reply {versions.chosen(message) + 1} / {versions.count(message)}"


def details_text(conv: Conversation, selected: int | None) -> str:
    """The record of the selected reply, else of the last reply."""
    messages = conv.messages
    if selected is None or not 0 <= selected < len(messages) or messages[selected]["role"] != "assistant":
        selected = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), None)
    if selected is None:
        return "No reply yet."
    return f"**Message {selected + 1}**  \n" + provenance.describe(messages[selected].get("provenance"))


@dataclass
class ChatFace:
    """What the Chat tab lends these controls: its components, and its helpers for
    reading the controls and showing a conversation."""
    tab: Any  # the ChatTab (chat_tab.py imports this module, so not named here)
    session: gr.State
    param_inputs: list
    param_names: list[str]
    split: Callable[[tuple], tuple[Any, tuple]]  # control values -> (ChatOptions, parameter values)
    stream: Callable  # a Reply streamed as (message box, chatbot, status, past chats)
    shown: Callable[[Conversation], list[dict]]
    displayed: Callable[[list[dict], bool], list[tuple[int | None, dict]]]
    past_update: Callable[[Conversation], Any]


def wire(hearth: Hearth, panel: VersionsPanel, face: ChatFace) -> None:
    tab = face.tab
    opts = tab.option_inputs

    def conversation(state, values):
        options, param_values = face.split(values)
        return state.get(hearth, options), options, param_values

    def swipe(step: int):
        def handler(selected, state, *values):
            conv, _, _ = conversation(state, values)
            try:
                shown, count = conv.swipe(step)
            except USER_ERRORS as e:
                return gr.skip(), notice(e), gr.skip(), gr.skip()
            # The line and details too: two versions alike leave the Chatbot unchanged (no change event).
            return (face.shown(conv), f"Showing version {shown} of {count} of the last reply.",
                    version_line(conv), details_text(conv, selected))
        return handler

    def reproduce(state, s, *values):
        conv, _, _ = conversation(state, values)
        try:
            reply = conv.reproduce()
        except USER_ERRORS as e:
            yield gr.skip(), face.shown(conv), notice(e), gr.skip()
            return
        yield gr.skip(), face.shown(conv), "Reproducing the reply from its record…", gr.skip()
        yield from face.stream(conv, reply, s)

    def impersonate(draft: str, state, s, *values):
        conv, options, param_values = conversation(state, values)
        draft = draft or ""
        try:
            job = conv.impersonate(draft, options, values_to(GenerationParams, face.param_names, param_values))
        except USER_ERRORS as e:
            yield gr.skip(), notice(e)
            return
        s.job = job  # Stop stops it
        yield gr.skip(), "Writing your next message…"
        for text, end in stream_job(job):
            if end is None:
                yield draft + (text if draft else text.lstrip()), gr.skip()
                continue
            built = getattr(job.prompt, "built", None)
            written = strip_markers(draft + (text if draft else text.lstrip()), built.stop if built else ())
            if isinstance(end, Failed):
                yield (written if written.strip() else draft), end_status(end)
            else:
                yield written.rstrip(), "Your next message, written by the model: edit it and send it."

    def branch(selected, state, *values):
        conv, _, _ = conversation(state, values)
        index = selected if isinstance(selected, int) and 0 <= selected < len(conv.messages) \
            else len(conv.messages) - 1
        source = conv.history.title
        try:
            conv.branch(index)
        except USER_ERRORS as e:
            return gr.skip(), notice(e), gr.skip(), gr.skip(), gr.skip()
        return (face.shown(conv), f"A new chat branched from “{source}” at message {index + 1}.",
                face.past_update(conv), conv.history.title, None)

    def select(state, data: gr.SelectData):
        conv = state.conversation
        if conv is None:
            return None, "No reply yet.", gr.skip()
        index = data.index if isinstance(data.index, int) else data.index[0]
        rows = face.displayed(conv.messages, conv.reply is not None)
        chosen = rows[index][0] if 0 <= index < len(rows) else None
        if chosen is None:
            return None, details_text(conv, None), gr.skip()
        return (chosen, details_text(conv, chosen),
                f"Message {chosen + 1} selected: Branch here starts a new chat that ends with it.")

    def refresh(state, selected):
        conv = state.conversation
        if conv is None:
            return "", "No reply yet."
        return version_line(conv), details_text(conv, selected)

    chat_inputs = [tab.state, *opts]
    swiped = [tab.chatbot, tab.status, panel.shown, panel.details]
    panel.previous.click(swipe(-1), [panel.selected, *chat_inputs], swiped, queue=False)
    panel.next.click(swipe(1), [panel.selected, *chat_inputs], swiped, queue=False)
    panel.reproduce.click(reproduce, [tab.state, face.session, *opts, *face.param_inputs],
                          [tab.message, tab.chatbot, tab.status, tab.past],
                          concurrency_limit=None, show_progress="hidden")
    panel.impersonate.click(impersonate, [tab.message, tab.state, face.session, *opts, *face.param_inputs],
                            [tab.message, tab.status], concurrency_limit=None, show_progress="hidden")
    panel.branch.click(branch, [panel.selected, *chat_inputs],
                       [tab.chatbot, tab.status, tab.past, tab.title, panel.selected], queue=False)
    tab.chatbot.select(select, [tab.state], [panel.selected, panel.details, tab.status], queue=False)
    # Every change of the chat (a reply streaming, another chat opened) updates the
    # version line and the details; only the latest of a burst runs. The status line too:
    # a greedy Regenerate may end with the Chatbot's value unchanged (no change event),
    # but its status always goes from "…" to the reply's speed, after the reply is settled.
    gr.on([tab.chatbot.change, tab.status.change], refresh, [tab.state, panel.selected],
          [panel.shown, panel.details], concurrency_limit=None, trigger_mode="always_last",
          show_progress="hidden")
