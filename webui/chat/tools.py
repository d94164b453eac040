"""Tool use for one chat request: the tools checked, the prompt rendered with them, the
grammar that forces a call, and the reply read back as calls.

`check_tool_request` checks what a client sent (tools, tool_choice, the conversation's
tool calls and results) and raises one line for anything wrong. `plan_tools` then fits
it to the template in use: a template that renders `tools` itself (Qwen, Hermes,
Llama 3.1, Mistral) gets them and the messages in Hugging Face's shape; one that does
not (SmolLM2's, the built-ins) gets a Hermes-style description of the tools in the
system message, the calls written back as <tool_call> blocks and the results as
<tool_response> blocks in a user turn, as Qwen 2.5's template does. With tool_choice
`required` or a named function, the reply is constrained by a grammar built from the
tools' schemas; with `auto` (and --tool-grammar auto) by a grammar that leaves text free
and forces valid arguments once a call begins; whatever the model writes is checked.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webui.chat.structured import (
    CallShape,
    SchemaError,
    check_schema,
    check_value,
    text_or_call_grammar,
    tool_call_grammar,
)
from webui.chat.template_fallback import NO_FACTS, ModelFacts, choose_template
from webui.chat.templates import render_chat_prompt
from webui.chat.tool_calls import MARKERS, ToolCall, format_of_template, held_back, knows_tools, parse_tool_calls
from webui.errors import ErrorKind, UserError

Message = dict[str, Any]
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
MAX_TOOLS = 128

# How each format's template writes its calls. A forced call is written bare where the
# format has a bare form, else after the marker; in a free reply (tool_choice auto, the
# text-or-call grammar) the marker opens the calls, and a bare form's "{" too.
CALL_SHAPES = {
    "hermes": CallShape("arguments", "<tool_call>", "\n", "\n</tool_call>\n<tool_call>\n", "\n</tool_call>"),
    "llama3": CallShape("parameters", "<|python_tag|>", "", "; ", "", bare=True),
    "mistral": CallShape("arguments", "[TOOL_CALLS]", "[", ", ", "]"),
    "generic": CallShape("arguments", bare=True),
}

# --tool-grammar: what constrains a reply under tool_choice "auto".
TOOL_GRAMMARS = ("auto", "required-only")

HERMES_TOOLS_TEXT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}}\n</tool_call>"
)


@dataclass(frozen=True)
class ToolRequest:
    """What a client asked: its tools (OpenAI's shape, checked) and the choice."""
    tools: tuple[Mapping[str, Any], ...] = ()
    choice: str = "auto"  # "none" | "auto" | "required" | a function's name
    parallel: bool = True

    @property
    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def forced(self) -> bool:
        return bool(self.tools) and self.choice not in ("auto", "none")


def _invalid(message: str) -> UserError:
    return UserError(message, kind=ErrorKind.INVALID)


def check_tool_request(tools: Sequence[Any] | None, choice: Any, parallel: bool | None,
                       messages: Sequence[Message]) -> ToolRequest | None:
    """The request's tool fields checked (one-line INVALID errors); None when neither they
    nor the conversation involve tools."""
    if not tools and choice is None and not any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
        return None
    tools = list(tools or [])
    if len(tools) > MAX_TOOLS:
        raise _invalid(f"at most {MAX_TOOLS} tools are allowed")
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function" or not isinstance(fn, Mapping):
            raise _invalid(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _invalid(f"tools[{i}].function.name must be 1-64 letters, digits, _ or -")
        if name in seen:
            raise _invalid(f"tools[{i}].function.name {name!r} is given twice")
        seen.add(name)
        params = fn.get("parameters", {"type": "object", "properties": {}})
        check_schema(params, f"tools[{i}].function.parameters")
        if params.get("type", "object") != "object":
            raise _invalid(f"tools[{i}].function.parameters must describe an object (\"type\": \"object\")")
    name = _choice_name(choice)
    if name not in ("none", "auto", "required") and name not in seen:
        raise _invalid(f"tool_choice names {name!r}, which is not among the tools")
    if name == "required" and not tools:
        raise _invalid("tool_choice 'required' needs at least one tool")
    _check_tool_messages(messages)
    return ToolRequest(tuple(tools), name, True if parallel is None else bool(parallel))


def _choice_name(choice: Any) -> str:
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _invalid("tool_choice must be 'none', 'auto', 'required' or {\"type\": \"function\", ...}")
        return choice
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise _invalid("tool_choice must be 'none', 'auto', 'required' or {\"type\": \"function\", "
                       "\"function\": {\"name\": ...}}")
    return fn["name"]


def _check_tool_messages(messages: Sequence[Message]) -> None:
    ids: set[str] = set()
    for i, m in enumerate(messages):
        for call in m.get("tool_calls") or ():
            try:
                json.loads(call["function"]["arguments"])
            except (ValueError, TypeError, KeyError):
                raise _invalid(f"messages[{i}].tool_calls: arguments must be a JSON text") from None
            ids.add(call["id"])
        if m["role"] == "tool" and m.get("tool_call_id") not in ids:
            raise _invalid(f"messages[{i}] answers tool_call_id {m.get('tool_call_id')!r}, which no earlier "
                           "assistant message called")


@dataclass
class ToolPlan:
    """A request's tools fitted to the template in use."""
    request: ToolRequest
    fmt: str = "hermes"
    grammar: str = ""  # forces a call (tool_choice required or a named function)
    schemas: dict[str, Mapping] = field(default_factory=dict)
    # tool_choice auto: free text, or calls whose arguments match the schemas once the
    # format's marker begins one; applied only where nothing else constrains the reply.
    text_or_call_grammar: str = ""

    @property
    def active(self) -> bool:
        return bool(self.request.tools) and self.request.choice != "none"

    def hold_back(self, text: str) -> int:
        """How much of a streamed reply may go out as text now (see tool_calls.held_back)."""
        return 0 if self.request.forced else held_back(text, self.fmt)

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """(content, calls) of a finished reply; calls' arguments checked against their
        tools' schemas. Raises a one-line FAILED UserError for a broken or unknown call."""
        if not self.active:
            return text, []
        content, calls = parse_tool_calls(text, self.fmt)
        for call in calls:
            if call.name not in self.schemas:
                raise UserError(f"the model called {call.name!r}, which is not among the tools", kind=ErrorKind.FAILED)
            check_value(json.loads(call.arguments), self.schemas[call.name], f"the arguments of {call.name}")
        if self.request.forced and not calls:
            raise UserError("the model wrote no tool call although tool_choice requires one", kind=ErrorKind.FAILED)
        if calls and not self.request.parallel:
            calls = calls[:1]
        return content, [c.with_id() for c in calls]


def plan_tools(request: ToolRequest, template_source: str, tool_grammar: str = "auto") -> ToolPlan:
    """Fit a checked request to a template: its format, the grammar when forced, and
    with tool_choice auto and `tool_grammar` "auto" the text-or-call grammar."""
    fmt = format_of_template(template_source) if knows_tools(template_source) else "hermes"
    tools = [t["function"] for t in request.tools]
    if request.choice not in ("auto", "none", "required"):
        tools = [t for t in tools if t["name"] == request.choice]
    schemas = {t["name"]: t.get("parameters", {"type": "object", "properties": {}}) for t in tools}
    plan = ToolPlan(request, fmt, schemas=schemas)
    shape = CALL_SHAPES[fmt]
    schema_list = [{"name": n, "parameters": s} for n, s in schemas.items()]
    if request.forced:
        before, after = ("", "") if shape.bare else (shape.marker + shape.opening, shape.closing)
        plan.grammar = tool_call_grammar(schema_list, shape.args_key, before, after)
    elif plan.active and tool_grammar == "auto":
        plan.text_or_call_grammar = text_or_call_grammar(schema_list, shape, request.parallel)
    return plan


def tool_messages(messages: Sequence[Message], request: ToolRequest, template_source: str) -> tuple[list[Message], dict]:
    """(messages, extra template variables) to render for a template: HF's shape and
    `tools` for a template that knows tools, else a Hermes-style rewrite."""
    tools = [dict(t) for t in request.tools] if request.choice != "none" else []
    if knows_tools(template_source):
        out = []
        for m in messages:
            m = dict(m)
            if m.get("tool_calls"):  # HF templates want the arguments as an object
                m["tool_calls"] = [{"id": c["id"], "type": "function",
                                    "function": {"name": c["function"]["name"],
                                                 "arguments": json.loads(c["function"]["arguments"])}}
                                   for c in m["tool_calls"]]
            out.append(m)
        return out, ({"tools": tools} if tools else {})
    out: list[Message] = []
    for m in messages:
        if m["role"] == "tool":
            block = f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
        elif m.get("tool_calls"):
            blocks = [f"<tool_call>\n{json.dumps({'name': c['function']['name'], 'arguments': json.loads(c['function']['arguments'])})}\n</tool_call>"
                      for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": "\n".join(filter(None, [m.get("content") or "", *blocks]))})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    out = [{k: v for k, v in m.items() if k != "_tool_results"} for m in out]
    if tools:
        text = HERMES_TOOLS_TEXT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + text}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out, {}


def template_source(chat_template: str | None, facts: ModelFacts = NO_FACTS) -> str:
    """The text of the template a raw chat renders with (prompts.chat_prompt's choice)."""
    return choose_template(chat_template, facts).template.source


def tool_chat_prompt(source: str, messages: Sequence[Message], system_prompt: str | None,
                     request: ToolRequest, **template_vars: Any) -> str:
    """prompts.chat_prompt for a conversation with tools, tool calls or tool results."""
    convo = [dict(m) for m in messages]
    if system_prompt and system_prompt.strip():
        convo.insert(0, {"role": "system", "content": system_prompt})
    convo, extra = tool_messages(convo, request, source)
    return render_chat_prompt(source, convo, add_generation_prompt=True, **extra, **template_vars)


__all__ = ["MARKERS", "SchemaError", "ToolCall", "ToolPlan", "ToolRequest", "check_tool_request",
           "plan_tools", "template_source", "tool_chat_prompt", "tool_messages"]
