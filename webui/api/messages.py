"""/v1/messages: Anthropic's Messages API over Hearth's one queue, so clients built for
it (the official `anthropic` SDK and what is built on it) work against a local model.

The same core call as /v1/chat/completions (`Hearth.chat`), framed Anthropic's way:
content blocks, `stop_reason`, `usage` in input/output tokens, server-sent events
named by type, and errors as {"type": "error", "error": {"type", "message"}} (the
body is read and checked here, not by FastAPI, so even a missing field answers in
that shape). A reasoning model's thinking (chat/reasoning.py) leaves as thinking
blocks before the text. Tools (client tools, tool_use and tool_result blocks) map onto
the core's tool calling (chat/tools.py), as /v1/chat/completions' do. Keys: `x-api-key`
(what Anthropic's clients send) or Bearer.

Stop sequences are matched here rather than by the worker, so the reply can say
which one ended it (`stop_sequence`); the job is stopped at the match, within a token.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loaders.fields import SettingError
from loaders.params import GenerationParams
from webui.accounts.current import for_end_user
from webui.api.deps import get_hearth, get_settings
from webui.api.errors import APIError, api_error
from webui.api.limits import check_prompt_size, check_queue
from webui.api.schemas import END_USER_CHARS
from webui.api.streaming import SSE_HEADERS, job_events
from webui.chat.reasoning import ReasoningSplitter
from webui.chat.templates import ChatTemplateError
from webui.chat.tools import ToolCall, ToolPlan, check_tool_request
from webui.config import ServerSettings
from webui.errors import UserError
from webui.hearth import Hearth
from webui.runtime.generation import Failed, GenerationJob, GenerationStats
from webui.runtime.stop_strings import StopMatcher

_SUBMIT_LIMITER = anyio.CapacityLimiter(64)

# Anthropic's error types by HTTP status.
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 422: "invalid_request_error",
                429: "rate_limit_error", 503: "overloaded_error"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageParam(_Strict):
    role: Literal["user", "assistant"] = Field(description="user or assistant, starting with user; "
                                               "the system text goes in `system`.")
    content: str | list[dict[str, Any]] = Field(description="A text, or content blocks: text, and thinking "
                                                "blocks of earlier replies (not fed back to the model).")


class MessagesRequest(_Strict):
    model: str | None = Field(None, description="Ignored: Hearth answers with the loaded model.")
    messages: list[MessageParam] = Field(..., min_length=1)
    max_tokens: int = Field(..., ge=1, description="Most tokens to generate.")
    system: str | list[dict[str, Any]] | None = Field(None, description="The system prompt: a text or text blocks.")
    temperature: float | None = Field(None, ge=0, description="Randomness; 0 is greedy.")
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    stop_sequences: list[str] | None = Field(None, description="The reply ends before the first of these; "
                                             "stop_reason says stop_sequence and stop_sequence which.")
    stream: bool = Field(False, description="Send the reply as server-sent events (message_start, "
                         "content_block_start/delta/stop, message_delta, message_stop).")
    thinking: dict[str, Any] | None = Field(None, description="{\"type\": \"enabled\", \"budget_tokens\": N} or "
                                            "{\"type\": \"disabled\"}: switches thinking on or off for templates "
                                            "that read enable_thinking; the budget is not enforced. Thinking "
                                            "comes back as thinking blocks.")
    grammar: str | None = Field(None, description="Hearth's own: a GBNF grammar the reply must follow "
                                "(llama.cpp), as on /v1/chat/completions.")
    metadata: dict[str, Any] | None = Field(None, description="user_id: the end user this request is for, "
                                            "queued as OpenAI's `user` is (see /v1/chat/completions); "
                                            "the rest is ignored.")
    service_tier: str | None = Field(None, description="Accepted and ignored.")
    cache_control: dict[str, Any] | None = Field(None, description="Accepted and ignored: Hearth reuses a "
                                                 "cached prompt prefix by itself.")
    tools: list[dict[str, Any]] | None = Field(None, description="Client tools the model may call: "
                                               "{\"name\", \"description\", \"input_schema\"} (server tools are refused).")
    tool_choice: dict[str, Any] | None = Field(None, description="{\"type\": \"auto\"}, {\"type\": \"any\"}, {\"type\": "
                                               "\"tool\", \"name\": ...} or {\"type\": \"none\"}; any and tool constrain "
                                               "the reply with a grammar (llama.cpp); auto leaves text free and, "
                                               "once the model begins a call, forces input matching the schema "
                                               "(server flag --tool-grammar). disable_parallel_tool_use: "
                                               "at most one call.")


def end_user_of(metadata: dict[str, Any] | None) -> str | None:
    """metadata.user_id, Anthropic's name for the end user a request is for."""
    user_id = (metadata or {}).get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or len(user_id) > END_USER_CHARS):
        raise MessageError(400, f"metadata.user_id: a string of at most {END_USER_CHARS} characters")
    return user_id


class MessageError(Exception):
    """A request refused in Anthropic's shape."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())

    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ERROR_TYPES.get(self.status, "api_error"),
                                           "message": self.message}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _refusal(error: Exception) -> MessageError:
    if isinstance(error, MessageError):
        return error
    if isinstance(error, UserError):
        error = api_error(error)
    if isinstance(error, APIError):
        return MessageError(error.status, error.message)
    if isinstance(error, ChatTemplateError):
        return MessageError(400, f"the model's chat template failed: {error}")
    raise error


def parse_request(raw: bytes) -> MessagesRequest:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MessageError(400, "the request body is not valid JSON") from None
    try:
        return MessagesRequest.model_validate(data)
    except ValidationError as e:
        raise MessageError(400, _describe(e)) from None


def _describe(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    if first.get("type") == "missing":
        return f"{where}: Field required"
    if first.get("type") == "extra_forbidden":
        return f"{where}: Extra inputs are not permitted"
    if first.get("type") == "model_type":
        return "the request body must be a JSON object"
    return f"{where}: {first.get('msg', 'is not valid')}".removeprefix(": ")


def _text_of(content: str | list[dict[str, Any]], where: str) -> str:
    """The system prompt's or a tool result's text."""
    if isinstance(content, str):
        return content
    parts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise MessageError(400, f"{where}.{i}: only text blocks ({{\"type\": \"text\", \"text\": ...}}) "
                                    "are supported here")
        parts.append(block["text"])
    return "".join(parts)


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _turn(m: MessageParam, where: str) -> list[dict[str, Any]]:
    """One Anthropic message as the core's messages (HF's shape): text; an assistant's
    tool_use blocks as tool_calls; a user's tool_result blocks as tool messages, before
    the user's text. Thinking blocks of earlier replies are dropped, not fed back."""
    text, calls, results = [], [], []
    for i, block in enumerate(_blocks(m.content)):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}.{i}"
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif kind in ("thinking", "redacted_thinking"):
            continue
        elif kind == "tool_use" and m.role == "assistant":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) \
                    or not isinstance(block.get("input"), dict):
                raise MessageError(400, f"{at}: a tool_use block needs an id, a name and an input object")
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"], "arguments": json.dumps(block["input"])}})
        elif kind == "tool_result" and m.role == "user":
            if not isinstance(block.get("tool_use_id"), str):
                raise MessageError(400, f"{at}: a tool_result block needs a tool_use_id")
            result = _text_of(block.get("content", ""), f"{at}.content")
            if block.get("is_error"):
                result = "Error: " + result
            results.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": result})
        elif kind in ("tool_use", "tool_result"):
            owner = "an assistant" if kind == "tool_use" else "a user"
            raise MessageError(400, f"{at}: a {kind} block belongs in {owner} message")
        elif kind == "text":
            raise MessageError(400, f"{at}.text: a text block needs a string text")
        else:
            raise MessageError(400, f"{at}: content blocks of type {kind!r} are not supported "
                                    "(text, tool_use, tool_result)")
    out: list[dict[str, Any]] = list(results)
    if text or calls or not results:
        turn: dict[str, Any] = {"role": m.role, "content": "".join(text)}
        if calls:
            turn["tool_calls"] = calls
        out.append(turn)
    return out


def core_messages(body: MessagesRequest) -> tuple[list[dict[str, Any]], str]:
    """The conversation as the core reads it, and the system prompt."""
    if body.messages[0].role != "user":
        raise MessageError(400, "messages: the first message must use the user role")
    if body.messages[-1].role != "user":
        raise MessageError(400, "messages: the last message must use the user role "
                                "(continuing a started assistant reply is not supported yet)")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(body.messages):
        for turn in _turn(m, f"messages.{i}.content"):
            last = out[-1] if out else None
            if last is not None and last["role"] == turn["role"] != "tool" \
                    and not last.get("tool_calls") and not turn.get("tool_calls"):
                last["content"] += "\n\n" + turn["content"]  # Anthropic joins consecutive turns of one role
            else:
                out.append(turn)
    system = _text_of(body.system, "system") if body.system is not None else ""
    return out, system


def openai_tools(body: MessagesRequest) -> tuple[list[dict] | None, Any, bool | None]:
    """Anthropic's tools and tool_choice as the core's (OpenAI's) tools, choice and parallel flag."""
    tools = None
    if body.tools is not None:
        tools = []
        for i, tool in enumerate(body.tools):
            if tool.get("type") not in (None, "custom"):
                raise MessageError(400, f"tools.{i}: server tools (type {tool.get('type')!r}) are not supported; "
                                        "give client tools: name, description, input_schema")
            if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema", {}), dict):
                raise MessageError(400, f"tools.{i}: a tool needs a name and an input_schema object")
            fn = {"name": tool["name"], "parameters": tool.get("input_schema", {"type": "object"})}
            if isinstance(tool.get("description"), str):
                fn["description"] = tool["description"]
            tools.append({"type": "function", "function": fn})
    choice, parallel = None, None
    if body.tool_choice is not None:
        kind = body.tool_choice.get("type")
        if kind not in ("auto", "any", "tool", "none"):
            raise MessageError(400, "tool_choice.type: must be 'auto', 'any', 'tool' or 'none'")
        if kind == "tool" and not isinstance(body.tool_choice.get("name"), str):
            raise MessageError(400, "tool_choice: type 'tool' needs the tool's name")
        choice = {"auto": "auto", "any": "required", "none": "none"}.get(kind) or \
            {"type": "function", "function": {"name": body.tool_choice["name"]}}
        if body.tool_choice.get("disable_parallel_tool_use"):
            parallel = False
    return tools, choice, parallel


def thinking_switch(thinking: dict[str, Any] | None) -> bool | None:
    if thinking is None:
        return None
    kind = thinking.get("type")
    if kind not in ("enabled", "disabled"):
        raise MessageError(400, "thinking.type: must be 'enabled' or 'disabled'")
    return kind == "enabled"


def generation_params(body: MessagesRequest) -> GenerationParams:
    values: dict[str, Any] = {"max_new_tokens": body.max_tokens}
    for name in ("temperature", "top_p", "top_k", "grammar"):
        if getattr(body, name) is not None:
            values[name] = getattr(body, name)
    try:
        return GenerationParams.from_mapping(values)
    except SettingError as e:
        raise MessageError(400, str(e)) from None


class Answer:
    """One reply's content as it arrives: thinking and text split apart, stop sequences
    matched; `stop_sequence` says which one ended it."""

    def __init__(self, job: GenerationJob, stops: list[str]):
        fmt = getattr(job, "reasoning", None)
        self.splitter = fmt.splitter() if fmt is not None else ReasoningSplitter()
        self.stops = [s for s in stops if s]
        self.matcher = StopMatcher(self.stops)
        self.seen = ""  # the answer's text before the matcher, to tell which stop matched
        self.stop_sequence: str | None = None

    def feed(self, piece: str) -> tuple[str, str]:
        reasoning, content = self.splitter.feed(piece)
        return reasoning, self._match(content)

    def finish(self) -> tuple[str, str]:
        reasoning, content = self.splitter.finish()
        content = self._match(content)
        return reasoning, content + self.matcher.flush()

    def _match(self, content: str) -> str:
        if self.matcher.stopped:
            return ""
        self.seen += content
        out = self.matcher.feed(content)
        if self.matcher.stopped:
            self.stop_sequence = min((self.seen.find(s), s) for s in self.stops if s in self.seen)[1]
        return out

    def stop_reason(self, stats: GenerationStats) -> str:
        if self.stop_sequence is not None:
            return "stop_sequence"
        return "max_tokens" if stats.finish_reason == "length" else "end_turn"


def message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def message_body(mid: str, model: str, content: list[dict], stop_reason: str | None,
                 stop_sequence: str | None, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def event(kind: str, payload: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload}, ensure_ascii=False)}\n\n"


async def _collect(first, events: AsyncIterator, answer: Answer, job: GenerationJob):
    """The whole reply: (thinking, text, the last event)."""
    thinking, text = [], []
    item = first
    try:
        while isinstance(item, str):
            r, c = answer.feed(item)
            thinking.append(r)
            text.append(c)
            if answer.stop_sequence is not None:
                job.stop()  # the rest of the reply is not wanted
            item = await anext(events)
    finally:
        await events.aclose()
    r, c = answer.finish()
    return "".join(thinking) + r, "".join(text) + c, item


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id.replace("call_", "toolu_", 1), "name": call.name,
            "input": json.loads(call.arguments)}


def reply_blocks(thinking: str, text: str, calls: list[ToolCall]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    if text or not calls:
        content.append({"type": "text", "text": text})
    content.extend(tool_use_block(c) for c in calls)
    return content


class _Blocks:
    """The content blocks of a streamed reply: each opened, given deltas and closed in turn."""

    def __init__(self) -> None:
        self.n = 0
        self.open: str | None = None

    def add(self, kind: str, piece: str) -> Iterator[str]:
        if self.open != kind:
            yield from self.start(kind, {"type": "thinking", "thinking": "", "signature": ""}
                                  if kind == "thinking" else {"type": "text", "text": ""})
        delta = {"type": "thinking_delta", "thinking": piece} if kind == "thinking" else \
            {"type": "text_delta", "text": piece}
        yield event("content_block_delta", {"index": self.n - 1, "delta": delta})

    def start(self, kind: str, block: dict[str, Any]) -> Iterator[str]:
        yield from self.close()
        yield event("content_block_start", {"index": self.n, "content_block": block})
        self.n += 1
        self.open = kind

    def call(self, call: ToolCall) -> Iterator[str]:
        """A tool call: its block, then its input whole as one input_json_delta."""
        block = tool_use_block(call)
        yield from self.start("tool_use", {**block, "input": {}})
        yield event("content_block_delta", {"index": self.n - 1,
                                             "delta": {"type": "input_json_delta", "partial_json": call.arguments}})

    def close(self) -> Iterator[str]:
        if self.open is not None:
            yield event("content_block_stop", {"index": self.n - 1})
            self.open = None


async def _stream(first, events: AsyncIterator, answer: Answer, job: GenerationJob,
                  mid: str, model: str, plan: ToolPlan | None) -> AsyncIterator[str]:
    """The reply as Anthropic's events. With tools, thinking streams as it comes and the
    answer is read whole at the end (a call is only known once it is complete): its text,
    then one tool_use block per call."""
    blocks, held = _Blocks(), []
    try:
        yield event("message_start", {"message": message_body(mid, model, [], None, None, 0, 0)})
        item, ended = first, False
        while True:
            if isinstance(item, str):
                r, c = answer.feed(item)
                if answer.stop_sequence is not None:
                    job.stop()
            else:
                r, c = answer.finish()
                ended = True
            if r:
                for out in blocks.add("thinking", r):
                    yield out
            if c and plan is not None:
                held.append(c)
            elif c:
                for out in blocks.add("text", c):
                    yield out
            if ended:
                break
            item = await anext(events)
        if isinstance(item, Failed):
            yield event("error", {"error": _refusal(item.error).body()["error"]})
            return
        calls: list[ToolCall] = []
        if plan is not None:
            try:
                text, calls = plan.parse("".join(held))
            except UserError as e:
                yield event("error", {"error": _refusal(e).body()["error"]})
                return
            if text:
                for out in blocks.add("text", text):
                    yield out
            for call in calls:
                for out in blocks.call(call):
                    yield out
        if blocks.n == 0:  # an empty reply still has its (empty) text block
            for out in blocks.start("text", {"type": "text", "text": ""}):
                yield out
        for out in blocks.close():
            yield out
        stats = item.stats
        yield event("message_delta", {"delta": {"stop_reason": "tool_use" if calls else answer.stop_reason(stats),
                                                "stop_sequence": answer.stop_sequence},
                                      "usage": {"input_tokens": stats.prompt_tokens,
                                                "output_tokens": stats.completion_tokens}})
        yield event("message_stop", {})
    finally:
        await events.aclose()


router = APIRouter()

def _inlined_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its nested models written in place, for /docs (the
    body is read by the route, so FastAPI does not list the models among its components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": _inlined_schema(MessagesRequest)}}}}
_REPLY_DOC = {200: {"description": "Anthropic's message object; with stream=true, its server-sent events.",
                    "content": {"application/json": {}, "text/event-stream": {"schema": {"type": "string"}}}}}


@router.post("/v1/messages", tags=["Anthropic-compatible"], summary="Answer a conversation (Anthropic's Messages API)",
             openapi_extra=_BODY_DOC, responses=_REPLY_DOC)
async def messages(request: Request, hearth: Hearth = Depends(get_hearth),
                   settings: ServerSettings = Depends(get_settings)):
    try:
        body = parse_request(await request.body())
        convo, system = core_messages(body)
        check_prompt_size(sum(len(m["content"]) for m in convo) + len(system), settings.max_prompt_chars, "messages")
        params = generation_params(body)
        enable_thinking = thinking_switch(body.thinking)
        tools = check_tool_request(*openai_tools(body), convo)
        loaded = hearth.models.current
        if loaded is None:
            raise MessageError(503, "no model is loaded: load one with POST /v1/internal/model/load "
                                    "or in the Model tab")
        check_queue(hearth.engine.queue_length, settings.max_queue)

        def submit() -> GenerationJob:
            return hearth.chat(convo, params, system, tools=tools, enable_thinking=enable_thinking)

        with for_end_user(end_user_of(body.metadata)):
            job = await anyio.to_thread.run_sync(submit, limiter=_SUBMIT_LIMITER)
        events = job_events(job, request.receive)
        first = await anext(events)
        if isinstance(first, Failed):
            await events.aclose()
            raise first.error
    except (MessageError, APIError, UserError, ChatTemplateError) as e:
        return _refusal(e).response()
    answer = Answer(job, body.stop_sequences or [])
    plan: ToolPlan | None = getattr(job, "tool_plan", None)
    plan = plan if plan is not None and plan.active else None
    mid = message_id()
    if body.stream:
        return StreamingResponse(_stream(first, events, answer, job, mid, loaded.name, plan),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    thinking, text, last = await _collect(first, events, answer, job)
    if isinstance(last, Failed):
        return _refusal(last.error).response()
    calls: list[ToolCall] = []
    if plan is not None:
        try:
            text, calls = plan.parse(text)
        except UserError as e:
            return _refusal(e).response()
    stats = last.stats
    return JSONResponse(message_body(mid, loaded.name, reply_blocks(thinking, text, calls),
                                     "tool_use" if calls else answer.stop_reason(stats), answer.stop_sequence,
                                     stats.prompt_tokens, stats.completion_tokens))


__all__ = ["MessagesRequest", "router"]
