"""The Chat tab: a streamed conversation with Send, Stop, Regenerate and Clear."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from loaders.base import LoadError
from loaders.fields import SettingError
from loaders.params import GenerationParams
from webui.core import Hearth
from webui.templates import ChatTemplateError
from webui.ui.forms import values_to
from webui.ui.session import BrowserSession
from webui.ui.streaming import stream_job


@dataclass
class ChatTab:
    chatbot: gr.Chatbot
    message: gr.Textbox
    send: gr.Button
    stop: gr.Button
    regenerate: gr.Button
    clear: gr.Button
    system_prompt: gr.Textbox
    status: gr.Markdown


def layout() -> ChatTab:
    chatbot = gr.Chatbot(label="Chat", height=480, elem_id="chat", buttons=["copy"],
                         placeholder="Say hello to the model.")
    with gr.Row():
        message = gr.Textbox(placeholder="Type a message; Enter sends, Shift+Enter adds a line",
                             show_label=False, scale=8, lines=1, max_lines=8, elem_id="chat-input",
                             autofocus=True)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
    with gr.Row():
        regenerate = gr.Button("Regenerate", size="sm", elem_id="chat-regenerate")
        clear = gr.Button("Clear", size="sm", elem_id="chat-clear")
    status = gr.Markdown("", elem_id="chat-status")
    with gr.Accordion("System prompt", open=False):
        system_prompt = gr.Textbox(show_label=False, lines=3,
                                   placeholder="Optional: instructions the model sees before the chat.")
    return ChatTab(chatbot, message, send, stop, regenerate, clear, system_prompt, status)


def wire(hearth: Hearth, tab: ChatTab, session: gr.State, params: dict[str, Any]) -> None:
    names = list(params)

    def reply(s: BrowserSession, system: str, values) -> Any:
        try:
            gen = values_to(GenerationParams, names, values)
            job = hearth.chat(s.messages, gen, system)
        except (SettingError, LoadError, ChatTemplateError) as e:
            s.messages.pop()  # the message stays in the box to send again
            yield gr.skip(), s.messages, f"⚠️ {e}"
            return
        s.job = job
        s.messages.append({"role": "assistant", "content": ""})
        for text, status in stream_job(job):
            s.messages[-1]["content"] = text
            if status is not None and not text:
                s.messages.pop()  # failed or stopped before any text: no empty bubble
            yield gr.skip(), s.messages, status if status is not None else gr.skip()

    def respond(message: str, system: str, s: BrowserSession, *values):
        if not message.strip():
            yield gr.skip(), gr.skip(), gr.skip()
            return
        s.stop()
        s.messages.append({"role": "user", "content": message})
        yield "", s.messages, "…"
        before = len(s.messages)
        yield from reply(s, system, values)
        if len(s.messages) < before:
            yield message, s.messages, gr.skip()  # refused: give the text back to edit

    def regenerate(system: str, s: BrowserSession, *values):
        s.stop()
        while s.messages and s.messages[-1]["role"] == "assistant":
            s.messages.pop()
        if not s.messages:
            yield gr.skip(), s.messages, "Nothing to regenerate."
            return
        yield from reply(s, system, values)

    def stop(s: BrowserSession):
        s.stop()

    def clear(s: BrowserSession):
        s.stop()
        s.messages.clear()
        return [], ""

    inputs = [tab.message, tab.system_prompt, session, *params.values()]
    outputs = [tab.message, tab.chatbot, tab.status]
    # concurrency_limit=None: every session may wait in Hearth's own fair queue;
    # Gradio's default of one at a time would make Stop wait behind other users.
    for trigger in (tab.send.click, tab.message.submit):
        trigger(respond, inputs, outputs, concurrency_limit=None, show_progress="hidden")
    tab.regenerate.click(regenerate, inputs[1:], outputs, concurrency_limit=None,
                         show_progress="hidden")
    tab.stop.click(stop, [session], None, queue=False)
    tab.clear.click(clear, [session], [tab.chatbot, tab.status], queue=False)
    tab.chatbot.clear(clear, [session], [tab.chatbot, tab.status], queue=False)
