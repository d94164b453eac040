"""/v1/messages: Anthropic's Messages API over Hearth's one queue, so clients built for
it (the official `anthropic` SDK and what is built on it) work against a local model.

The same core call as /v1/chat/completions (`Hearth.chat`), framed Anthropic's way:
content blocks, `stop_reason`, `usage` in input/output tokens, server-sent events
named by type, and errors as {"type": "error", "error": {"type", "message"}} (the
body is read and checked here, not by FastAPI, so even a missing field answers in
that shape). A reasoning model's thinking (chat/reasoning.py) leaves as thinking
blocks before the text. Keys: `x-api-key` (what Anthropic's clients send) or Bearer.

Stop sequences are matched here rather than by the worker, so the reply can say
which one ended it (`stop_sequence`); the job is stopped at the match, within a token.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loaders.fields import SettingError
from loaders.params import GenerationParams
from webui.api.deps import get_hearth, get_settings
from webui.api.errors import APIError, api_error
from webui.api.limits import check_prompt_size, check_queue
from webui.api.streaming import SSE_HEADERS, job_events
from webui.chat.reasoning import ReasoningSplitter
from webui.chat.templates import ChatTemplateError
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
    metadata: dict[str, Any] | None = Field(None, description="Accepted and ignored.")
    service_tier: str | None = Field(None, description="Accepted and ignored.")
    cache_control: dict[str, Any] | None = Field(None, description="Accepted and ignored: Hearth reuses a "
                                                 "cached prompt prefix by itself.")
    tools: list[dict[str, Any]] | None = Field(None, description="Not supported yet: must be empty.")
    tool_choice: dict[str, Any] | None = Field(None, description="Not supported yet.")


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
    """A message's or the system prompt's text; thinking blocks of earlier replies are dropped."""
    if isinstance(content, str):
        return content
    parts = []
    for i, block in enumerate(content):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind in ("thinking", "redacted_thinking"):
            continue  # a reasoning model's earlier thinking is not fed back
        elif kind in ("tool_use", "tool_result"):
            raise MessageError(400, "tools are not supported yet on /v1/messages")
        elif kind == "text":
            raise MessageError(400, f"{where}.{i}.text: a text block needs a string text")
        else:
            raise MessageError(400, f"{where}.{i}: content blocks of type {kind!r} are not supported "
                                    "(only text)")
    return "".join(parts)


def core_messages(body: MessagesRequest) -> tuple[list[dict[str, str]], str]:
    """The conversation as the core reads it, and the system prompt."""
    if body.tools or body.tool_choice:
        raise MessageError(400, "tools are not supported yet on /v1/messages")
    if body.messages[0].role != "user":
        raise MessageError(400, "messages: the first message must use the user role")
    if body.messages[-1].role != "user":
        raise MessageError(400, "messages: the last message must use the user role "
                                "(continuing a started assistant reply is not supported yet)")
    out: list[dict[str, str]] = []
    for i, m in enumerate(body.messages):
        text = _text_of(m.content, f"messages.{i}.content")
        if out and out[-1]["role"] == m.role:  # Anthropic joins consecutive turns of one role
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": m.role, "content": text})
    system = _text_of(body.system, "system") if body.system is not None else ""
    return out, system


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


async def _stream(first, events: AsyncIterator, answer: Answer, job: GenerationJob,
                  mid: str, model: str) -> AsyncIterator[str]:
    blocks = {"n": 0, "open": None}  # how many blocks were opened, and the kind of the open one

    def block(kind: str, piece: str):
        if blocks["open"] != kind:
            if blocks["open"] is not None:
                yield event("content_block_stop", {"index": blocks["n"] - 1})
            start = {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else \
                {"type": "text", "text": ""}
            yield event("content_block_start", {"index": blocks["n"], "content_block": start})
            blocks["n"] += 1
            blocks["open"] = kind
        delta = {"type": "thinking_delta", "thinking": piece} if kind == "thinking" else \
            {"type": "text_delta", "text": piece}
        yield event("content_block_delta", {"index": blocks["n"] - 1, "delta": delta})

    try:
        yield event("message_start", {"message": message_body(mid, model, [], None, None, 0, 0)})
        item = first
        while isinstance(item, str):
            r, c = answer.feed(item)
            for kind, piece in (("thinking", r), ("text", c)):
                if piece:
                    for out in block(kind, piece):
                        yield out
            if answer.stop_sequence is not None:
                job.stop()
            item = await anext(events)
        r, c = answer.finish()
        for kind, piece in (("thinking", r), ("text", c)):
            if piece:
                for out in block(kind, piece):
                    yield out
        if isinstance(item, Failed):
            yield event("error", {"error": _refusal(item.error).body()["error"]})
            return
        if blocks["open"] is None:  # an empty reply still has its (empty) text block
            yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            blocks["n"] = 1
        yield event("content_block_stop", {"index": blocks["n"] - 1})
        stats = item.stats
        yield event("message_delta", {"delta": {"stop_reason": answer.stop_reason(stats),
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
        loaded = hearth.models.current
        if loaded is None:
            raise MessageError(503, "no model is loaded: load one with POST /v1/internal/model/load "
                                    "or in the Model tab")
        check_queue(hearth.engine.queue_length, settings.max_queue)

        def submit() -> GenerationJob:
            return hearth.chat(convo, params, system, enable_thinking=enable_thinking)

        job = await anyio.to_thread.run_sync(submit, limiter=_SUBMIT_LIMITER)
        events = job_events(job, request.receive)
        first = await anext(events)
        if isinstance(first, Failed):
            await events.aclose()
            raise first.error
    except (MessageError, APIError, UserError, ChatTemplateError) as e:
        return _refusal(e).response()
    answer = Answer(job, body.stop_sequences or [])
    mid = message_id()
    if body.stream:
        return StreamingResponse(_stream(first, events, answer, job, mid, loaded.name),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    thinking, text, last = await _collect(first, events, answer, job)
    if isinstance(last, Failed):
        return _refusal(last.error).response()
    content: list[dict[str, Any]] = []
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    content.append({"type": "text", "text": text})
    stats = last.stats
    return JSONResponse(message_body(mid, loaded.name, content, answer.stop_reason(stats), answer.stop_sequence,
                                     stats.prompt_tokens, stats.completion_tokens))


__all__ = ["MessagesRequest", "router"]
