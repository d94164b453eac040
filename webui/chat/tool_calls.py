"""Tool calls in a model's text: the formats real chat templates teach, and their parsers.

Pure functions over strings, so each format is tested on recorded outputs:

- `hermes`: Hermes 2 Pro, Qwen 2/2.5/3, SmolLM3 and Hearth's own fallback description of the
  tools (`tool_prompts.py`): `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`,
  one block per call.
- `llama3`: Llama 3.1-3.3: `<|python_tag|>` and/or a bare `{"name": ..., "parameters": {...}}`,
  several separated by `;`.
- `mistral`: Mistral v0.3 `[TOOL_CALLS] [{"name": ..., "arguments": {...}}]`, and the newer
  `[TOOL_CALLS]name[ARGS]{...}`.
- `generic`: a JSON object (or a list of them, or {"tool_calls": [...]}) with "name" and
  "arguments" or "parameters", alone in the reply or in a ```json fence.

Every format falls back to `generic` when its own markers are absent, since small models
drift between formats. Text that holds a marker but no readable call is a ToolCallError
(one line): a call that was begun and is broken must not reach a client as prose.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from webui.errors import ErrorKind, UserError

FORMATS = ("hermes", "llama3", "mistral", "generic")

# The text that opens a call in each format; a streamed reply is held back from here on.
MARKERS: dict[str, tuple[str, ...]] = {
    "hermes": ("<tool_call>",),
    "llama3": ("<|python_tag|>",),
    "mistral": ("[TOOL_CALLS]",),
    "generic": (),
}

_HERMES_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)
_MISTRAL_ARGS = re.compile(r"\[TOOL_CALLS\]\s*([A-Za-z0-9_.-]+)\s*\[ARGS\]", re.DOTALL)


class ToolCallError(UserError):
    """The model began a tool call it did not finish readably (one line)."""

    def __init__(self, message: str):
        super().__init__(message, kind=ErrorKind.FAILED)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text of an object, as OpenAI sends it
    id: str = ""

    def with_id(self) -> ToolCall:
        return self if self.id else ToolCall(self.name, self.arguments, "call_" + uuid.uuid4().hex[:24])


def format_of_template(source: str) -> str:
    """The call format a chat template teaches, from the markers it writes."""
    if "<tool_call>" in source:
        return "hermes"
    if "<|python_tag|>" in source or "ipython" in source:
        return "llama3"
    if "[TOOL_CALLS]" in source:
        return "mistral"
    return "generic"


def knows_tools(source: str) -> bool:
    """Whether a template renders the `tools` it is given (else Hearth describes them)."""
    return "tools" in source and "tool_call" in source


def parse_tool_calls(text: str, fmt: str) -> tuple[str, list[ToolCall]]:
    """(content outside the calls, the calls) read from a reply in format `fmt`."""
    parser = {"hermes": _parse_hermes, "llama3": _parse_llama3, "mistral": _parse_mistral}.get(fmt)
    if parser is not None:
        found = parser(text)
        if found is not None:
            return found
    # Small models drift between formats: any of the marked ones, then bare JSON.
    for other in ("hermes", "mistral", "llama3"):
        if other != fmt and any(m in text for m in MARKERS[other]):
            found = {"hermes": _parse_hermes, "llama3": _parse_llama3, "mistral": _parse_mistral}[other](text)
            if found is not None:
                return found
    return _parse_generic(text)


def _parse_hermes(text: str) -> tuple[str, list[ToolCall]] | None:
    if "<tool_call>" not in text:
        return None
    calls = [_call_from(_load(body, "<tool_call>")) for body in _HERMES_BLOCK.findall(text)]
    content = _HERMES_BLOCK.sub("", text).strip()
    return content, calls


def _parse_llama3(text: str) -> tuple[str, list[ToolCall]] | None:
    head, tag, tail = text.partition("<|python_tag|>")
    if not tag:  # Llama 3.2's bare `{...}; {...}`; a single bare object is generic's
        parts = _split_semicolons(text.strip()) if text.strip().startswith("{") else []
        try:
            items = [json.loads(p) for p in parts]
        except ValueError:
            return None
        if len(items) < 2 or not all(_looks_like_call(i) for i in items):
            return None
        return "", [_call_from(i) for i in items]
    body = tail.replace("<|eom_id|>", "").replace("<|eot_id|>", "").strip()
    calls = [_call_from(_load(part, "<|python_tag|>")) for part in _split_semicolons(body)]
    return head.strip(), calls


def _parse_mistral(text: str) -> tuple[str, list[ToolCall]] | None:
    head, tag, tail = text.partition("[TOOL_CALLS]")
    if not tag:
        return None
    named = list(_MISTRAL_ARGS.finditer(text))
    if named:  # [TOOL_CALLS]name[ARGS]{...}, repeated
        calls = []
        for i, m in enumerate(named):
            end = named[i + 1].start() if i + 1 < len(named) else len(text)
            arguments = _load(text[m.end():end].strip(), "[ARGS]")
            calls.append(_call_from({"name": m.group(1), "arguments": arguments}))
        return head.strip(), calls
    value = _load(tail.replace("</s>", "").strip(), "[TOOL_CALLS]")
    items = value if isinstance(value, list) else [value]
    return head.strip(), [_call_from(item) for item in items]


def _parse_generic(text: str) -> tuple[str, list[ToolCall]]:
    stripped = text.strip()
    fenced = _FENCE.fullmatch(stripped)
    candidate = fenced.group(1) if fenced else stripped
    if not candidate.startswith(("{", "[")):
        return text, []
    try:
        value = json.loads(candidate)
    except ValueError:
        return text, []  # prose that happens to open with a brace: not a call
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    items = value if isinstance(value, list) else [value]
    if not items or not all(_looks_like_call(i) for i in items):
        return text, []
    return "", [_call_from(i) for i in items]


def _looks_like_call(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    item = item.get("function", item) if isinstance(item.get("function"), dict) else item
    return isinstance(item.get("name"), str) and ("arguments" in item or "parameters" in item)


def _split_semicolons(body: str) -> list[str]:
    """Llama 3's `{...}; {...}`: split at top-level semicolons only."""
    parts, depth, start, in_string, escaped = [], 0, 0, False, False
    for i, ch in enumerate(body):
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == ";" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def _load(body: str, where: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as e:
        raise ToolCallError(f"the model wrote a tool call after {where} that is not valid JSON ({e.msg} "
                            f"at character {e.pos})") from None


def _call_from(item: Any) -> ToolCall:
    if isinstance(item, dict) and isinstance(item.get("function"), dict):  # OpenAI's own shape
        item = item["function"]
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise ToolCallError("the model wrote a tool call without a function name")
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise ToolCallError(f"the model's call of {item['name']} has arguments that are not JSON") from None
    if not isinstance(arguments, dict):
        raise ToolCallError(f"the model's call of {item['name']} has arguments that are not a JSON object")
    return ToolCall(item["name"], json.dumps(arguments, ensure_ascii=False))


def held_back(text: str, fmt: str) -> int:
    """Where a streamed reply must stop being sent as text: the start of a call marker,
    or of a trailing partial marker, or 0 when the reply opens like bare JSON (a call in
    `generic` or `llama3`); len(text) when all of it is plain text so far."""
    if text.lstrip().startswith(("{", "[", "```")):
        return 0
    markers = [m for f in FORMATS for m in MARKERS[f]]
    cut = min((i for i in (text.find(m) for m in markers) if i >= 0), default=len(text))
    for m in markers:  # a marker split across chunks: hold its first characters back
        for n in range(min(len(m) - 1, len(text)), 0, -1):
            if text.endswith(m[:n]):
                cut = min(cut, len(text) - n)
                break
    return cut
