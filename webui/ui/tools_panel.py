"""The Chat tab's tools: which tools this chat may call, the tool choice, the load
notices (one line per tool file or MCP server that failed), and Approve / Deny for a
call that waits for the user.

A reply with tools switched on runs the core's tool loop (webui/tools/runner.py) in
its own thread; each call is shown in the chat as a folded block (name, arguments,
then its result and time) above the answer, and a call to a tool not marked safe
waits for Approve or Deny. This module only reads the controls and shows the loop.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from loaders.params import GenerationParams
from webui.chat.conversation import Conversation
from webui.hearth import Hearth
from webui.tools.runner import ReplyDone, ReplyFailed, ToolEvent, ToolLoop, ToolReply

AUTO = "auto (the model decides)"
REQUIRED = "required (some tool)"
_STATUS_TITLES = {"pending": "waiting for your approval", "running": "running", "denied": "denied",
                  "failed": "failed"}


@dataclass
class ToolsPanel:
    enabled: gr.CheckboxGroup
    choice: gr.Dropdown
    notices: gr.Markdown
    reload: gr.Button
    approve: gr.Button
    deny: gr.Button


def _choices(hearth: Hearth) -> list[tuple[str, str]]:
    out = []
    for name in hearth.tools.names():
        tool = hearth.tools.get(name)
        out.append((f"{name} ({'safe' if tool.safe else 'asks first'}; {tool.source})", name))
    return out


def _notices(hearth: Hearth) -> str:
    return "\n".join(f"- ⚠ {n}" for n in hearth.tools.notices)


def layout(hearth: Hearth) -> ToolsPanel:
    with gr.Accordion("Tools", open=False, elem_id="chat-tools-panel"):
        with gr.Row():
            approve = gr.Button("Approve the tool call", size="sm", variant="primary", elem_id="chat-tool-approve")
            deny = gr.Button("Deny", size="sm", variant="stop", elem_id="chat-tool-deny")
        enabled = gr.CheckboxGroup([], value=[], label="Tools this chat may call", elem_id="chat-tools",
                                   info="Python files in user_data/tools/ and the shipped ones; MCP servers "
                                        "in user_data/mcp.json. A tool not marked safe asks you first.")
        choice = gr.Dropdown([AUTO, REQUIRED], value=AUTO, label="Tool choice (first round)",
                             elem_id="chat-tool-choice",
                             info="A small model rarely picks a tool itself: name one to make it call it.")
        notices = gr.Markdown("", elem_id="chat-tools-notices")
        reload = gr.Button("Reload tools", size="sm", elem_id="chat-tools-reload")
    return ToolsPanel(enabled, choice, notices, reload, approve, deny)


def choice_value(choice: str | None) -> str:
    if not choice or choice == AUTO:
        return "auto"
    return "required" if choice == REQUIRED else choice


def _working_messages(history: list[dict]) -> list[dict]:
    """The chat so far in OpenAI's shape for the loop: what was said, not the tool blocks."""
    return [{"role": m["role"], "content": m["content"]} for m in history
            if m["role"] in ("user", "assistant") and m.get("content")]


def event_record(event: ToolEvent) -> dict:
    return {"name": event.name, "arguments": event.arguments, "status": event.status,
            "result": event.result, "seconds": round(event.seconds, 3), "safe": event.safe}


def event_block(record: dict) -> dict:
    """A tool call as a folded block in the Chatbot."""
    args = json.dumps(record["arguments"], ensure_ascii=False)
    status = record["status"]
    title = f"Tool call: {record['name']} {args}"
    title += f" · {record['seconds']:.2f} s" if status == "done" else f" · {_STATUS_TITLES.get(status, status)}"
    body = record["result"] if status in ("done", "failed", "denied") else f"Arguments: {args}"
    return {"role": "assistant", "content": body,
            "metadata": {"title": title, "status": "done" if status in ("done", "failed", "denied") else "pending"}}


def run(hearth: Hearth, conv: Conversation, state: Any, text: str, enabled: list[str], choice: str,
        params: GenerationParams, system_prompt: str) -> Iterator[tuple[str, str]]:
    """Send `text` with tools on: yields ("update", status) while the loop runs and
    ("end", status) once; the history holds the user's message, the calls and the answer."""
    loop = ToolLoop(hearth.tools, enabled, choice_value(choice))
    loop.request(0)  # a bad choice or a vanished tool is one line before anything is saved
    conv.stop()
    conv.history.messages.append({"role": "user", "content": text})
    working = _working_messages(conv.history.messages)
    answer: dict = {"role": "assistant", "content": "", "tool_events": []}
    conv.history.messages.append(answer)
    conv.save()
    reply = ToolReply(loop, working, lambda m, request: hearth.tool_round(m, params, system_prompt, request,
                                                                         on_job=reply.watch))
    state.tool_reply = reply
    reply.start()
    yield "update", "…"
    records: dict[str, dict] = {}
    for item in reply.updates():
        if isinstance(item, ToolEvent):
            records[item.id] = event_record(item)
            answer["tool_events"] = list(records.values())
            waiting = item.status == "pending" and not item.safe
            yield "update", (f"Tool call: {item.name} asks to run: Approve or Deny (in Tools)" if waiting
                             else f"Tool call: {item.name}: {item.status}")
        elif isinstance(item, ReplyDone):
            answer["content"] = item.text.strip()
            conv.save()
            yield "end", f"Done · {len(records)} tool call{'s' if len(records) != 1 else ''}"
        elif isinstance(item, ReplyFailed):
            if not answer["content"] and not answer["tool_events"]:
                conv.history.messages.remove(answer)
            conv.save()
            yield "end", f"⚠ {item.error}".splitlines()[0]
    state.tool_reply = None


def wire(hearth: Hearth, panel: ToolsPanel, state: gr.State, status: gr.Markdown,
         demo: gr.Blocks | None = None) -> None:
    def refresh(enabled: list[str] | None = None):
        names = hearth.tools.names()
        kept = [n for n in (enabled or []) if n in names]
        return (gr.update(choices=_choices(hearth), value=kept),
                gr.update(choices=[AUTO, REQUIRED, *names]), _notices(hearth))

    def reload(enabled):
        hearth.tools.reload()
        return refresh(enabled)

    def decide(approved: bool):
        def handler(chat_state):
            reply = getattr(chat_state, "tool_reply", None)
            if reply is None or not reply.decide(approved):
                return "No tool call is waiting."
            return "Approved: running the tool…" if approved else "Denied."
        return handler

    outputs = [panel.enabled, panel.choice, panel.notices]
    panel.reload.click(reload, [panel.enabled], outputs)
    panel.approve.click(decide(True), [state], [status], queue=False)
    panel.deny.click(decide(False), [state], [status], queue=False)
    if demo is not None:
        demo.load(refresh, [panel.enabled], outputs)
