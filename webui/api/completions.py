"""/v1/completions and /v1/chat/completions: OpenAI's shapes over Hearth's one queue.

Both submit to `hearth.engine` (the queue the UI uses too) and wait for the first
event before answering, so an error that happens before any text (a prompt longer
than the context, say) is a proper HTTP error rather than a broken stream.
"""
from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from loaders.fields import SettingError
from webui.accounts.current import for_end_user
from webui.api import file_parts
from webui.api.deps import get_hearth, get_settings
from webui.api.errors import APIError, api_error
from webui.api.limits import check_prompt_size, check_queue
from webui.api.logprobs import LogprobsShape, chat_request, completion_request
from webui.api.schemas import (
    OPENAI_NAMES,
    SAMPLER_FIELDS,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    to_generation_params,
)
from webui.api.streaming import SSE_HEADERS, Text, job_events, sse
from webui.chat.attachments import AttachmentLimits
from webui.chat.reasoning import ReasoningSplitter, split_reasoning
from webui.chat.structured import with_response_format
from webui.chat.template_fallback import strip_markers
from webui.chat.templates import ChatTemplateError
from webui.chat.tools import ToolCall, ToolPlan, check_tool_request
from webui.config import ServerSettings
from webui.errors import UserError
from webui.hearth import Hearth
from webui.runtime.generation import Failed, Finished, GenerationJob, GenerationStats
from webui.runtime.stop_strings import StopMatcher

# Hearth.chat renders the chat template, and both it and Hearth.complete run the
# extensions' modify_prompt hooks (each may take up to its time limit) before they
# queue the job, so they run off the event loop, in threads of their own budget: a
# burst of API requests cannot starve the UI's.
_SUBMIT_LIMITER = anyio.CapacityLimiter(64)

STREAM_DOC = {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                    "description": "With stream=true: OpenAI's chunks as server-sent events, then [DONE]."}}


_TEXT_MARK = "hearth-text-piece"  # stands for the text where a chunk's template is cut


class Reply:
    """One answer's OpenAI framing: ids, chunks and the final body."""

    logprobs: LogprobsShape | None = None  # set when the request asked for logprobs

    def __init__(self, chat: bool, model: str, include_usage: bool):
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        # A plain text chunk's SSE line around its text, rendered once: building and
        # encoding the whole chunk cost the event loop 5.5-15 us per token, this 0.9-3.6 us
        # (bench/stream_overhead.py's chunk figures, 2 cores at load 5-10).
        line = sse(self.chunk(_TEXT_MARK))
        self._text_line = line.rpartition(json.dumps(_TEXT_MARK))[::2]

    def text_sse(self, text: str) -> str:
        """sse(chunk(text)), byte for byte, for text that carries no logprobs."""
        if self.logprobs is not None and getattr(text, "logprobs", ()):
            return sse(self.chunk(text))
        head, tail = self._text_line
        return head + json.dumps(text, ensure_ascii=False) + tail

    def _frame(self, choices: list[dict]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                               "created": self.created, "model": self.model, "choices": choices}
        if self.chat:
            out["system_fingerprint"] = None
        if self.include_usage:
            out["usage"] = None
        return out

    def chunk(self, text: str | None, finish_reason: str | None = None, role: bool = False,
              reasoning: str | None = None) -> dict:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if reasoning is not None:  # a reasoning model's thinking, in deltas of its own
                delta["reasoning_content"] = reasoning
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": self.logprobs_of(text if reasoning is None else reasoning),
                      "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": self.logprobs_of(text), "finish_reason": finish_reason}
        return self._frame([choice])

    def tool_calls_chunk(self, calls: list[ToolCall]) -> dict:
        """All of a reply's calls in one delta (each call's arguments whole)."""
        delta = {"tool_calls": [dict(tool_call_json(c), index=i) for i, c in enumerate(calls)]}
        return self._frame([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def logprobs_of(self, text: str | None) -> dict | None:
        """The logprobs of the tokens a piece of text carries (api/streaming.Text)."""
        tokens = getattr(text, "logprobs", ())
        return self.logprobs.of(tokens) if self.logprobs is not None and tokens else None

    def usage_chunk(self, stats: GenerationStats) -> dict:
        out = self._frame([])
        out["usage"] = usage(stats)
        return out

    def body(self, text: str, stats: GenerationStats, calls: list[ToolCall] | None = None,
             reasoning: str = "") -> dict:
        reason = "tool_calls" if calls else finish_reason(stats)
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else text)}
            if reasoning:
                message["reasoning_content"] = reasoning
            if calls:
                message["tool_calls"] = [tool_call_json(c) for c in calls]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": [choice], "usage": usage(stats)}


def finish_reason(stats: GenerationStats) -> str:
    # "cancelled" only happens when the client left, so nobody reads it; OpenAI has no such value.
    return "length" if stats.finish_reason == "length" else "stop"


def tool_call_json(call: ToolCall) -> dict:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def usage(stats: GenerationStats) -> dict:
    out = {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
           "total_tokens": stats.prompt_tokens + stats.completion_tokens}
    if stats.speculation:
        out["completion_tokens_details"] = {
            "accepted_prediction_tokens": stats.accepted_draft_tokens,
            "rejected_prediction_tokens": stats.draft_tokens - stats.accepted_draft_tokens}
    return out


def ignored_params(hearth, body) -> list[str]:
    """Samplers the request set that the loaded model does not honour (told, not hidden)."""
    loaded = hearth.models.current
    if loaded is None:
        return []
    asked = {OPENAI_NAMES.get(n, n) for n in body.model_fields_set if n in SAMPLER_FIELDS}
    return sorted(asked - set(loaded.model.supported_params))


async def answer(request: Request, job: GenerationJob, reply: Reply, stream: bool,
                 headers: dict[str, str], prefix: str = "", markers: Sequence[str] = ()):
    """The job's reply, whole or streamed; a chat's template `markers` never end it."""
    events = job_events(job, request.receive)
    first = await anext(events)
    if isinstance(first, Failed):
        await events.aclose()
        raise api_error(first.error)
    if markers:
        events = _without_begun_marker(first, events, markers)
        first = await anext(events)
    plan: ToolPlan | None = getattr(job, "tool_plan", None)
    if stream:
        thinking = getattr(job, "reasoning", None) if reply.chat else None
        if thinking is not None:
            events = _split_thinking(first, events, thinking.splitter())
            first = await anext(events)
        stream_body = _sse_stream(first, events, reply, prefix) if plan is None or not plan.active else \
            _sse_tool_stream(first, events, reply, plan)
        return StreamingResponse(stream_body, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    parts = [prefix]
    tokens = []
    event = first
    try:
        while isinstance(event, str):
            parts.append(event)
            tokens.extend(getattr(event, "logprobs", ()))
            event = await anext(events)
    finally:
        await events.aclose()
    if isinstance(event, Failed):
        raise api_error(event.error)
    text, reasoning = "".join(parts), ""
    if reply.chat and getattr(job, "reasoning", None) is not None:
        reasoning, text = split_reasoning(text, job.reasoning)
    if plan is not None and plan.active:
        content, calls = plan.parse(text)  # a broken call: one line, 400
        out = reply.body(content, event.stats, calls, reasoning)
    else:
        out = reply.body(text, event.stats, reasoning=reasoning)
    if reply.logprobs is not None:
        out["choices"][0]["logprobs"] = reply.logprobs.of(tokens)
    return JSONResponse(out, headers=headers)


async def _without_begun_marker(event, events: AsyncIterator, markers: Sequence[str]) -> AsyncIterator:
    """The job's events with a template marker begun at the reply's end taken off, as the
    chat UI does (chat/template_fallback.strip_markers): the stop strings end a reply at
    a whole marker, but one cut by max_tokens inside a marker ends with its start
    ("<|im_"), which they release as text. Text that may begin a marker waits for the
    next piece (stop_strings.StopMatcher), so a stream never sends it either."""
    matcher = StopMatcher(markers)
    try:
        while isinstance(event, str):
            text, tokens = matcher.feed(event), getattr(event, "logprobs", ())
            if text or tokens:
                yield Text.of(text, tokens)
            event = await anext(events)
        rest = strip_markers(matcher.flush(), markers)
        if rest:
            yield Text.of(rest, ())
        yield event
    finally:
        await events.aclose()


class Thinking(Text):
    """A piece of a reply's thinking, as _split_thinking hands it on."""


async def _split_thinking(event, events: AsyncIterator, splitter: ReasoningSplitter) -> AsyncIterator:
    """The job's events with each text piece cut into Thinking and answer Text
    (chat/reasoning.py); a piece's logprobs go with its answer part, else its thinking."""
    try:
        while isinstance(event, str):
            reasoning, content = splitter.feed(event)
            tokens = getattr(event, "logprobs", ())
            if reasoning:
                yield Thinking.of(reasoning, () if content else tokens)
            if content:
                yield Text.of(content, tokens)
            event = await anext(events)
        reasoning, content = splitter.finish()
        if reasoning:
            yield Thinking.of(reasoning, ())
        if content:
            yield Text.of(content, ())
        yield event
    finally:
        await events.aclose()


async def _sse_stream(event, events: AsyncIterator, reply: Reply, prefix: str) -> AsyncIterator[str]:
    try:
        if reply.chat:
            yield sse(reply.chunk("", role=True))
        elif prefix:
            yield sse(reply.chunk(prefix))
        while True:
            if isinstance(event, Thinking):
                yield sse(reply.chunk(None, reasoning=event))
            elif isinstance(event, str):
                yield reply.text_sse(event)
            elif isinstance(event, Finished):
                yield sse(reply.chunk(None if reply.chat else "", finish_reason(event.stats)))
                if reply.include_usage:
                    yield sse(reply.usage_chunk(event.stats))
                yield sse("[DONE]")
                return
            else:  # Failed after text was sent: OpenAI's clients raise on an error chunk
                yield sse(api_error(event.error).body())
                return
            event = await anext(events)
    finally:
        await events.aclose()


async def _sse_tool_stream(event, events: AsyncIterator, reply: Reply, plan: ToolPlan) -> AsyncIterator[str]:
    """A chat reply that may call tools: text goes out as it comes until a call may have
    begun (ToolPlan.hold_back); the rest is read whole at the end, so a call leaves as one
    tool_calls delta with finish_reason tool_calls, or a broken one as an error chunk."""
    text, sent = "", 0
    try:
        yield sse(reply.chunk("", role=True))
        while isinstance(event, str):
            if isinstance(event, Thinking):
                yield sse(reply.chunk(None, reasoning=event))
                event = await anext(events)
                continue
            text += event
            if sent == len(text) - len(event):  # nothing held back yet
                cut = plan.hold_back(text)
                if cut > sent:  # the whole piece keeps its tokens' logprobs; a cut one has none
                    yield sse(reply.chunk(event if cut == len(text) else text[sent:cut]))
                    sent = cut
            event = await anext(events)
        if not isinstance(event, Finished):
            yield sse(api_error(event.error).body())
            return
        try:
            content, calls = plan.parse(text)
        except UserError as e:
            yield sse(api_error(e).body())
            return
        rest = content[sent:] if content.startswith(text[:sent]) else ""
        if rest:
            yield sse(reply.chunk(rest))
        if calls:
            yield sse(reply.tool_calls_chunk(calls))
        yield sse(reply.chunk(None, "tool_calls" if calls else finish_reason(event.stats)))
        if reply.include_usage:
            yield sse(reply.usage_chunk(event.stats))
        yield sse("[DONE]")
    finally:
        await events.aclose()


def thinking_switch(body: ChatCompletionRequest) -> bool | None:
    """enable_thinking from the top-level field or chat_template_kwargs (llama-server's and
    vLLM's way); None: the template's default."""
    kwargs = body.chat_template_kwargs or {}
    unknown = sorted(set(kwargs) - {"enable_thinking"})
    if unknown:
        raise APIError(400, f"chat_template_kwargs: only enable_thinking is supported, not {', '.join(unknown)}",
                       code="invalid_value")
    value = body.enable_thinking if body.enable_thinking is not None else kwargs.get("enable_thinking")
    if value is not None and not isinstance(value, bool):
        raise APIError(400, "enable_thinking must be true or false", code="invalid_value")
    return value


def chat_message(m) -> dict[str, Any]:
    """One request message as the core reads it (HF's shape for tool calls and results)."""
    out: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
    if m.tool_calls:
        out["tool_calls"] = [c.model_dump() for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.role == "tool" and m.name:
        out["name"] = m.name
    if m.role == "assistant" and m.reasoning_content:
        out["reasoning_content"] = m.reasoning_content
    return out


def _prepare(hearth, settings, body) -> tuple[Any, str, dict[str, str]]:
    """Validated params, the model's name and extra headers; raises APIError."""
    try:
        params = to_generation_params(body)
    except SettingError as e:
        raise APIError(422, str(e), code="invalid_value") from None
    loaded = hearth.models.current
    if loaded is None:
        raise APIError(503, "no model is loaded: load one with POST /v1/internal/model/load "
                            "or in the Model tab", code="model_not_loaded")
    check_queue(hearth.engine.queue_length, settings.max_queue)
    ignored = ignored_params(hearth, body)
    headers = {"X-Hearth-Ignored-Params": ",".join(ignored)} if ignored else {}
    return params, loaded.name, headers


router = APIRouter()


@router.post("/v1/completions", response_model=Completion, responses=STREAM_DOC,
             tags=["OpenAI-compatible"], summary="Continue a text")
async def completions(body: CompletionRequest, request: Request, hearth: Hearth = Depends(get_hearth),
                      settings: ServerSettings = Depends(get_settings)):
    check_prompt_size(len(body.prompt), settings.max_prompt_chars, "prompt")
    logprobs = completion_request(body.logprobs, body.echo, body.max_tokens)
    if body.max_tokens == 0:  # scoring the prompt: the samplers' max_tokens starts at 1
        body = body.model_copy(update={"max_tokens": None})
    params, model, headers = _prepare(hearth, settings, body)
    if body.response_format is not None:
        params = with_response_format(params, body.response_format, hearth.models.current.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    submit = functools.partial(hearth.complete, logprobs=logprobs)
    with for_end_user(body.user):  # queued as this key's end user (the thread gets a copy of the context)
        job = await anyio.to_thread.run_sync(submit, body.prompt, params, limiter=_SUBMIT_LIMITER)
    reply = Reply(False, model, include_usage)
    if logprobs is not None and (logprobs.prompt or logprobs.reply):
        reply.logprobs = LogprobsShape(chat=False, offset=0 if body.echo else len(body.prompt))
    return await answer(request, job, reply, body.stream, headers, prefix=body.prompt if body.echo else "")


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=STREAM_DOC,
             tags=["OpenAI-compatible"], summary="Answer a conversation")
async def chat_completions(body: ChatCompletionRequest, request: Request, hearth: Hearth = Depends(get_hearth),
                           settings: ServerSettings = Depends(get_settings)):
    messages = [chat_message(m) for m in body.messages]
    if file_parts.has_files(body.messages):  # read (a PDF parsed) off the event loop
        limits = AttachmentLimits.of(hearth.space().settings.load())
        messages = await anyio.to_thread.run_sync(file_parts.with_files, body.messages, messages, limits)
    check_prompt_size(sum(len(m["content"]) for m in messages), settings.max_prompt_chars, "messages")
    params, model, headers = _prepare(hearth, settings, body)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    try:
        tools = check_tool_request(body.tools, body.tool_choice, body.parallel_tool_calls, messages)
        logprobs = chat_request(body.logprobs, body.top_logprobs)
        submit = functools.partial(hearth.chat, tools=tools, response_format=body.response_format,
                                   logprobs=logprobs, enable_thinking=thinking_switch(body))
        with for_end_user(body.user):
            job = await anyio.to_thread.run_sync(submit, messages, params, limiter=_SUBMIT_LIMITER)
    except ChatTemplateError as e:
        raise APIError(400, f"the model's chat template failed: {e}", code="chat_template_error") from None
    reply = Reply(True, model, include_usage)
    if logprobs is not None:
        reply.logprobs = LogprobsShape(chat=True)
    # The template's markers, which Hearth.chat added to the request's own stop strings.
    markers = tuple(s for s in job.params.stop if s not in params.stop)
    return await answer(request, job, reply, body.stream, headers, markers=markers)
