"""The Chat tab: a streamed conversation in one of three modes (chat, chat-instruct,
instruct) with a character, and every chat action: send, stop, regenerate, continue,
remove last, edit a message (click its pencil), copy, new chat, past chats per
character, rename, delete.

Each browser session owns a `Conversation` (core), so two people never see each
other's messages and each Stop stops only its own reply. Every action is one core
call; this module only reads the controls and shows the result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from loaders.params import GenerationParams
from webui.chat.conversation import ChatOptions, Conversation, Reply
from webui.chat.group import speaker_label, unlabel
from webui.chat.settings import MODES
from webui.chat.templates import (
    BUILTIN_TEMPLATES,
    CUSTOM_TEMPLATE,
    MODEL_TEMPLATE,
    template_choices,
)
from webui.errors import UserError
from webui.hearth import Hearth
from webui.runtime.generation import Failed
from webui.ui import (
    chat_attachments,
    chat_avatar,
    chat_budget,
    chat_group,
    chat_lore,
    chat_search,
    chat_versions,
    tools_panel,
)
from webui.ui.forms import values_to
from webui.ui.idle_notice import announce_reload
from webui.ui.notices import notice
from webui.ui.session import BrowserSession
from webui.ui.streaming import end_status, stream_job

# What a chat action can refuse with: each becomes the one-line status. ChatRequest
# (webui/chat/prompts.py) still refuses a bad mode or a missing character with a plain
# ValueError.
USER_ERRORS = (UserError, ValueError)


class ChatState:
    """Per browser session (in a gr.State): its Conversation, made on first use, and
    the custom template typed in this session. A typed template stays this session's
    own: it reaches the shared settings file (and so every browser's new chats) only
    through the Save button."""

    def __init__(self) -> None:
        self.conversation: Conversation | None = None
        self.custom_template: str | None = None  # None: nothing typed here yet
        self.tool_reply = None  # the running tool loop (webui/tools/runner.py ToolReply), if any
        self.attachments: list = []  # files waiting for the next message (chat_attachments.py)

    def get(self, hearth: Hearth, options: ChatOptions) -> Conversation:
        if self.conversation is None:
            self.conversation = hearth.conversation(options)
        return self.conversation

    def __deepcopy__(self, memo):
        # Gradio copies a State's initial value for every new session: start empty.
        return ChatState()


@dataclass
class ChatTab:
    chatbot: gr.Chatbot
    message: gr.Textbox
    send: gr.Button
    stop: gr.Button
    regenerate: gr.Button
    continue_: gr.Button
    remove_last: gr.Button
    clear: gr.Button  # "New chat"
    status: gr.Markdown
    mode: gr.Radio
    character: gr.Dropdown
    past: gr.Dropdown
    title: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    system_prompt: gr.Textbox
    user_name: gr.Textbox
    template: gr.Dropdown
    template_text: gr.Code
    save_template: gr.Button
    state: gr.State
    tools: tools_panel.ToolsPanel
    search: chat_search.ChatSearch = field(kw_only=True)  # search across chats
    transfer: chat_search.ChatTransfer = field(kw_only=True)  # export, import
    attachments: chat_attachments.AttachmentsPanel
    group: chat_group.GroupPanel | None = None  # group chat, author's note (chat_group.py)
    lore: chat_lore.LorePanel | None = None  # the chat's lorebooks (chat_lore.py)
    versions: chat_versions.VersionsPanel | None = None  # swipes, Reproduce, Impersonate, Branch

    @property
    def option_inputs(self) -> list:
        return [self.mode, self.character, self.template, self.template_text, self.user_name,
                self.system_prompt]


def read_options(mode, character, template, template_text, user_name, system_prompt) -> ChatOptions:
    return ChatOptions(mode=mode or "instruct", character=character or "", template=template or MODEL_TEMPLATE,
                       custom_template=template_text or "", user_name=(user_name or "You").strip() or "You",
                       system_prompt=system_prompt or "")


def layout(hearth: Hearth) -> ChatTab:
    settings = hearth.space().settings.load()
    with gr.Row(equal_height=True):
        mode = gr.Radio(list(MODES), value=settings.mode, label="Mode", scale=3, elem_id="chat-mode",
                        info="chat: a character talks with you · chat-instruct: the character in the "
                             "model's template · instruct: a plain assistant")
        names = hearth.space().characters.names()
        character = gr.Dropdown(names, value=settings.character if settings.character in names else
                                (names[0] if names else None), label="Character",
                                scale=2, elem_id="chat-character")
        past = gr.Dropdown([], value=None, label="Past chats with this character", scale=3,
                           elem_id="chat-past")
    search = chat_search.layout()
    chatbot = gr.Chatbot(label="Chat", height=480, elem_id="chat", buttons=["copy", "copy_all"],
                         editable="all", placeholder="Say hello to the model.",
                         latex_delimiters=chat_attachments.LATEX_DELIMITERS)
    with gr.Row():
        message = gr.Textbox(placeholder="Type a message; Enter sends, Shift+Enter adds a line",
                             show_label=False, scale=8, lines=1, max_lines=8, elem_id="chat-input",
                             autofocus=True)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
    attachments = chat_attachments.layout(hearth)
    with gr.Row():
        regenerate = gr.Button("Regenerate", size="sm", elem_id="chat-regenerate")
        continue_ = gr.Button("Continue", size="sm", elem_id="chat-continue")
        remove_last = gr.Button("Remove last", size="sm", elem_id="chat-remove-last")
        clear = gr.Button("New chat", size="sm", elem_id="chat-clear")
    versions = chat_versions.layout()
    status = gr.Markdown("", elem_id="chat-status")
    tools = tools_panel.layout(hearth)
    lore = chat_lore.layout()
    group = chat_group.layout(hearth)
    with gr.Accordion("This chat", open=False):
        with gr.Row(equal_height=True):
            title = gr.Textbox(label="Chat name", scale=4, elem_id="chat-title")
            rename = gr.Button("Rename", size="sm", scale=1, elem_id="chat-rename")
            delete = gr.Button("Delete chat", size="sm", variant="stop", scale=1, elem_id="chat-delete")
        transfer = chat_search.transfer_layout()
    with gr.Accordion("System prompt, your name, instruction template", open=False):
        system_prompt = gr.Textbox(label="System prompt", lines=3, elem_id="chat-system",
                                   placeholder="Optional: instructions the model sees before the chat.")
        user_name = gr.Textbox(value=settings.user_name, label="Your name (chat modes)",
                               elem_id="chat-user-name")
        template = gr.Dropdown(template_choices(), value=settings.template, label="Instruction template",
                               info="Used by instruct and chat-instruct. Edit the text below to make "
                                    "your own (it becomes Custom, for this browser tab only).",
                               elem_id="chat-template")
        template_text = gr.Code(template_source(hearth, settings.template, settings.custom_template),
                                language="jinja2", label="Template (Jinja, rendered in a sandbox)",
                                interactive=True, elem_id="chat-template-text")
        save_template = gr.Button("Save as the default template", size="sm", elem_id="chat-template-save")
    return ChatTab(chatbot, message, send, stop, regenerate, continue_, remove_last, clear, status,
                   mode, character, past, title, rename, delete, system_prompt, user_name, template,
                   template_text, save_template, gr.State(ChatState()), tools, attachments, group=group,
                   search=search, transfer=transfer, lore=lore, versions=versions)


def shown(conv: Conversation) -> list[dict]:
    """The messages for the Chatbot: copies, so that Gradio serializing them never races
    another action of the same session changing one. A reasoning model's thinking is a
    "Thinking" block folded above its reply (Gradio's thought messages), open while it streams."""
    return [m for _, m in _displayed(conv.messages, conv.reply is not None)]


def _displayed(messages: list[dict], streaming: bool) -> list[tuple[int | None, dict]]:
    """(index in the history, or None for a thinking block; the Chatbot's message)."""
    out: list[tuple[int | None, dict]] = []
    for i, m in enumerate(messages):
        thought = m.get("reasoning_content")
        if thought:
            pending = streaming and i == len(messages) - 1 and not m["content"]
            out.append((None, {"role": "assistant", "content": thought,
                               "metadata": {"title": "Thinking", "status": "pending" if pending else "done"}}))
            if not m["content"]:
                continue
        for record in m.get("tool_events") or ():  # the calls of a reply with tools, above it
            out.append((None, tools_panel.event_block(record)))
        if m.get("tool_events") and not m["content"]:
            continue
        out.extend((None, chip) for chip in chat_attachments.chips(m))  # its attached files, above it
        if m.get("attachments") and not m["content"]:
            continue
        out.append((i, {"role": m["role"], "content": speaker_label(m) + m["content"]}))  # a group's: named
        budget = chat_budget.budget_block(m.get("context_budget"))  # how its context was spent, under it
        if budget is not None:
            out.append((None, budget))
    return out


def past_update(conv: Conversation) -> Any:
    chats = conv.past_chats()
    current = conv.history.id if any(c.id == conv.history.id for c in chats) else None
    return gr.update(choices=[(c.label, c.id) for c in chats], value=current)


def template_source(hearth: Hearth, choice: str, custom: str) -> str:
    """The text shown in the template box for a choice."""
    if choice == CUSTOM_TEMPLATE:
        return custom
    if choice in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[choice].source
    in_use = hearth.chat_template()
    if in_use is None:
        return "{# No model is loaded: its own template shows here once one is. #}"
    if in_use.name == MODEL_TEMPLATE:
        return in_use.template.source
    return f"{{# {in_use.name} is used: {in_use.reason}. #}}\n" + in_use.template.source


def choose_template(hearth: Hearth, state: ChatState, choice: str, shown_text: str) -> str:
    """The template box's text for a choice in the dropdown. Only a built-in or the
    model's own is remembered for every browser; Custom shows this session's own text,
    else the saved one, else what the box shows now (a start to edit)."""
    if choice != CUSTOM_TEMPLATE:
        _remember(hearth, template=choice)
        return template_source(hearth, choice, "")
    custom = state.custom_template or hearth.space().settings.load().custom_template or shown_text or ""
    state.custom_template = custom
    return custom


def edit_template(state: ChatState, text: str) -> str:
    """Typing in the template box makes it this session's Custom template (not saved)."""
    state.custom_template = text
    return CUSTOM_TEMPLATE


def save_template(hearth: Hearth, choice: str, text: str) -> str:
    """The Save button: this template becomes the default for new chats in every browser."""
    if choice == CUSTOM_TEMPLATE:
        if not (text or "").strip():
            return "The custom template is empty: nothing saved."
        _remember(hearth, template=CUSTOM_TEMPLATE, custom_template=text)
    else:
        _remember(hearth, template=choice)
    return f"Saved: new chats in every browser start with the {choice} template."


def wire(hearth: Hearth, tab: ChatTab, session: gr.State, params: dict[str, Any],
         demo: gr.Blocks | None = None) -> None:
    names = list(params)
    n_opts = len(tab.option_inputs)

    def split(values):
        return read_options(*values[:n_opts]), values[n_opts:]

    def stream(conv: Conversation, reply: Reply, s: BrowserSession):
        """Yield (message box, chatbot, status, past chats) as the reply streams."""
        s.job = reply.job
        for text, end in stream_job(reply.job):
            if not conv.update(reply, text):
                return  # a newer action replaced this reply
            if end is None:
                yield gr.skip(), shown(conv), gr.skip(), gr.skip()
                continue
            failed = isinstance(end, Failed)
            given_back = conv.finish(reply, failed=failed)
            status = end_status(end)
            built = getattr(reply.job.prompt, "built", None)
            if built is not None and built.dropped and not failed:
                status += f" · {built.dropped} older messages left out to fit the context"
            box = given_back if given_back is not None else gr.skip()
            yield box, shown(conv), status, past_update(conv)

    def respond(text: str, state: ChatState, s: BrowserSession, enabled_tools, tool_choice, *values):
        if not text.strip() and not state.attachments:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        options, param_values = split(values)
        conv = state.get(hearth, options)
        refused = chat_attachments.refusal(state, enabled_tools)
        if refused:
            yield gr.skip(), gr.skip(), refused, gr.skip()
            return
        announce_reload(hearth)
        if enabled_tools:
            yield from respond_with_tools(conv, state, text, enabled_tools, tool_choice, options, param_values)
            return
        try:
            gen = values_to(GenerationParams, names, param_values)
            reply = conv.send(text, options, gen, state.attachments, chat_attachments.limits(hearth))
        except USER_ERRORS as e:
            yield gr.skip(), shown(conv), notice(e), gr.skip()
            return
        yield "", shown(conv), "…", past_update(conv)
        yield from stream(conv, reply, s)

    def respond_with_tools(conv, state, text, enabled_tools, tool_choice, options, param_values):
        try:
            gen = values_to(GenerationParams, names, param_values)
            updates = tools_panel.run(hearth, conv, state, text, enabled_tools, tool_choice, gen,
                                      options.system_prompt)
            kind, status = next(updates)
        except USER_ERRORS as e:
            yield gr.skip(), shown(conv), notice(e), gr.skip()
            return
        yield "", shown(conv), status, past_update(conv)
        for kind, status in updates:
            yield gr.skip(), shown(conv), status, past_update(conv) if kind == "end" else gr.skip()

    def action(kind: str):
        def handler(state: ChatState, s: BrowserSession, *values):
            options, param_values = split(values)
            conv = state.get(hearth, options)
            announce_reload(hearth)
            try:
                gen = values_to(GenerationParams, names, param_values)
                reply = (conv.regenerate if kind == "regenerate" else conv.continue_reply)(options, gen)
            except USER_ERRORS as e:
                yield gr.skip(), shown(conv), notice(e), gr.skip()
                return
            yield gr.skip(), shown(conv), "…", gr.skip()
            yield from stream(conv, reply, s)
        return handler

    def stop(state: ChatState, s: BrowserSession):
        if state.conversation is not None:
            state.conversation.stop()
        if state.tool_reply is not None:
            state.tool_reply.stop()
        s.stop()

    def remove_last(state: ChatState, *opts):
        conv = state.get(hearth, read_options(*opts))
        try:
            before = list(conv.messages)
            text = conv.remove_last()
        except USER_ERRORS as e:
            return gr.skip(), shown(conv), notice(e), gr.skip()
        chat_attachments.take_back(state, before, conv.messages)  # with its text, the message's files
        return text, shown(conv), "", past_update(conv)

    def new_chat(state: ChatState, *opts):
        options = read_options(*opts)
        conv = state.get(hearth, options)
        conv.new_chat(options)
        return shown(conv), "", past_update(conv), ""

    def edit(state: ChatState, mode, character, template, text, user_name, system,
             data: gr.EditData):
        if data.value == data.previous_value:
            # Editing a reply edits every part of its bubble at once (its folded thinking,
            # tool calls, files, context block), and each part sends its own event: the
            # parts left alone answer nothing, or their answer, raced against the edited
            # part's, could show the chat from before the edit.
            return gr.skip(), gr.skip()
        conv = state.get(hearth, read_options(mode, character, template, text, user_name, system))
        index = data.index if isinstance(data.index, int) else data.index[0]
        shown_messages = _displayed(conv.messages, conv.reply is not None)
        index = shown_messages[index][0] if 0 <= index < len(shown_messages) else index
        if index is None:
            return shown(conv), "This block cannot be edited (thinking, a tool call or an attached file): " \
                                "edit the message itself."
        try:
            text = data.value if isinstance(data.value, str) else str(data.value)
            conv.edit(index, unlabel(text, conv.messages, index))  # without a group reply's name
        except USER_ERRORS as e:
            return shown(conv), notice(e)
        return shown(conv), "Message edited."

    def open_chat(chat_id: str, state: ChatState, *opts):
        conv = state.get(hearth, read_options(*opts))
        if not chat_id:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            if not conv.open(chat_id):
                # Open already: Gradio's Dropdown can send one choice twice, and the
                # second answer, arriving late, would put back the chat name the user
                # has begun to change.
                return gr.skip(), gr.skip(), gr.skip()
        except USER_ERRORS as e:
            return gr.skip(), notice(e), gr.skip()
        return shown(conv), f"Opened “{conv.history.title}”.", conv.history.title

    def rename(title: str, state: ChatState, *opts):
        conv = state.get(hearth, read_options(*opts))
        try:
            conv.rename(title)
        except USER_ERRORS as e:
            return notice(e), gr.skip()
        return f"Renamed to “{conv.history.title}”.", past_update(conv)

    def delete(state: ChatState, *opts):
        options = read_options(*opts)
        conv = state.get(hearth, options)
        try:
            conv.delete(options)
        except USER_ERRORS as e:
            return gr.skip(), notice(e), gr.skip(), gr.skip()
        return shown(conv), "Chat deleted.", past_update(conv), ""

    def choose_character(state: ChatState, *opts):
        options = read_options(*opts)
        _remember(hearth, character=options.character)
        return new_chat(state, *opts)

    def choose_mode(state: ChatState, *opts):
        options = read_options(*opts)
        _remember(hearth, mode=options.mode)
        conv = state.get(hearth, options)
        if not any(m["role"] == "user" for m in conv.messages):
            conv.new_chat(options)  # an untouched chat follows the mode (greeting or not)
        return shown(conv)

    def choose(choice: str, shown_text: str, state: ChatState):
        return choose_template(hearth, state, choice, shown_text)

    def save(choice: str, text: str):
        return save_template(hearth, choice, text)

    def on_load(state: ChatState):
        """A new page: controls from the saved settings, a fresh chat."""
        settings = hearth.space().settings.load()
        options = read_options(settings.mode, settings.character, settings.template,
                               settings.custom_template, settings.user_name, "")
        conv = state.get(hearth, options)
        who = conv.character.name if conv.character else None
        return (settings.mode, gr.update(choices=hearth.space().characters.names(), value=who),
                settings.template, template_source(hearth, settings.template, settings.custom_template),
                settings.user_name, shown(conv), past_update(conv))

    opts = tab.option_inputs
    outputs = [tab.message, tab.chatbot, tab.status, tab.past]
    param_inputs = list(params.values())
    # concurrency_limit=None: every session may wait in Hearth's own fair queue;
    # Gradio's default of one at a time would make Stop wait behind other users.
    for trigger in (tab.send.click, tab.message.submit):
        trigger(chat_attachments.sending(respond, hearth),
                [tab.message, tab.state, session, tab.tools.enabled, tab.tools.choice, *opts, *param_inputs],
                [*outputs, tab.attachments.chips, tab.attachments.clear],
                concurrency_limit=None, show_progress="hidden")
    for button, kind in ((tab.regenerate, "regenerate"), (tab.continue_, "continue")):
        button.click(action(kind), [tab.state, session, *opts, *param_inputs], outputs,
                     concurrency_limit=None, show_progress="hidden")
    tab.stop.click(stop, [tab.state, session], None, queue=False)
    tools_panel.wire(hearth, tab.tools, tab.state, tab.status, demo)
    chat_lore.wire(tab.lore, tab.state, tab.status, tab.past, demo)
    chat_avatar.wire(hearth, tab.character, tab.chatbot, tab.status, demo)
    if tab.versions is not None:
        chat_versions.wire(hearth, tab.versions, chat_versions.ChatFace(
            tab, session, param_inputs, names, split, stream, shown, _displayed, past_update))
    chat_search.wire(hearth, tab.search, tab.transfer, state=tab.state, options=opts, read_options=read_options,
                     shown=shown, past_update=past_update, character=tab.character, chatbot=tab.chatbot,
                     status=tab.status, past=tab.past, title=tab.title)
    if tab.group is not None:
        chat_group.wire(hearth, tab.group, tab.state, opts, tab.chatbot, tab.status, tab.character, tab.past,
                        read_options, shown, past_update)
    chat_attachments.wire(hearth, tab.attachments, tab.state, tab.status, demo)
    tab.remove_last.click(remove_last, [tab.state, *opts], outputs, queue=False).then(
        chat_attachments.waiting(hearth), [tab.state], [tab.attachments.chips, tab.attachments.clear], queue=False)
    tab.clear.click(new_chat, [tab.state, *opts], [tab.chatbot, tab.status, tab.past, tab.title], queue=False)
    tab.chatbot.clear(new_chat, [tab.state, *opts], [tab.chatbot, tab.status, tab.past, tab.title], queue=False)
    tab.chatbot.edit(edit, [tab.state, *opts], [tab.chatbot, tab.status], queue=False)
    tab.past.input(open_chat, [tab.past, tab.state, *opts], [tab.chatbot, tab.status, tab.title], queue=False)
    tab.rename.click(rename, [tab.title, tab.state, *opts], [tab.status, tab.past], queue=False)
    tab.delete.click(delete, [tab.state, *opts], [tab.chatbot, tab.status, tab.past, tab.title], queue=False)
    tab.character.input(choose_character, [tab.state, *opts], [tab.chatbot, tab.status, tab.past, tab.title],
                        queue=False)
    tab.mode.input(choose_mode, [tab.state, *opts], [tab.chatbot], queue=False)
    tab.template.input(choose, [tab.template, tab.template_text, tab.state], [tab.template_text], queue=False)
    tab.template_text.input(edit_template, [tab.state, tab.template_text], [tab.template], queue=False)
    tab.save_template.click(save, [tab.template, tab.template_text], [tab.status], queue=False)
    tab.user_name.blur(lambda name: _remember(hearth, user_name=(name or "You").strip() or "You"),
                       [tab.user_name], None, queue=False)
    if demo is not None:
        demo.load(on_load, [tab.state],
                  [tab.mode, tab.character, tab.template, tab.template_text, tab.user_name,
                   tab.chatbot, tab.past], queue=False)


def _remember(hearth: Hearth, **changes) -> None:
    try:
        hearth.space().settings.update(**changes)
    except (UserError, OSError) as e:
        gr.Warning(f"could not save the setting: {e}")
