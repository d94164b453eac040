"""The tool loop of one reply: the model asks for calls, the user approves each
(unless its tool is marked safe), each runs with a time limit, its result goes back
to the model quoted as untrusted data, and the model answers or asks again.

Bounded: at most `max_rounds` rounds of calls; the round after the last is generated
with tool_choice "none", so the model must answer in words. A chosen tool_choice
("required" or a tool's name) holds for the first round only, or the model would be
made to call tools for ever. A call that fails, times out or is denied is one line
in the chat and in the model's tool message, and the loop goes on.
"""
from __future__ import annotations

import contextvars
import dataclasses
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from webui.chat.tool_calls import ToolCall
from webui.chat.tools import ToolRequest
from webui.errors import UserError
from webui.tools.calls import ToolFailure, one_line
from webui.tools.quoting import quoted_result
from webui.tools.registry import DEFAULT_CALL_TIMEOUT, ToolRegistry

MAX_ROUNDS = 4

Message = dict[str, Any]
# (messages in OpenAI's shape, the tools or None) -> (the reply's text, its tool calls)
Generate = Callable[[list[Message], ToolRequest | None], tuple[str, list[ToolCall]]]


@dataclass
class ToolEvent:
    """One call as the chat shows it."""
    id: str
    name: str
    arguments: dict
    safe: bool
    status: str = "pending"  # pending | running | done | failed | denied
    result: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        args = json.dumps(self.arguments, ensure_ascii=False)
        head = f"{self.name}({args[1:-1] if args.startswith('{') else args})"
        if self.status == "done":
            return f"{head} · {self.seconds:.2f} s"
        return f"{head} · {self.status}" + (f" · {self.seconds:.2f} s" if self.seconds else "")


class ToolLoop:
    def __init__(self, registry: ToolRegistry, enabled: Sequence[str], choice: Any = "auto",
                 max_rounds: int = MAX_ROUNDS, call_timeout: float = DEFAULT_CALL_TIMEOUT):
        self.registry = registry
        self.enabled = list(enabled)
        self.choice = choice
        self.max_rounds = max_rounds
        self.call_timeout = call_timeout

    def request(self, round_index: int) -> ToolRequest | None:
        if not self.enabled:
            return None
        if round_index >= self.max_rounds:
            choice: Any = "none"
        else:
            choice = self.choice if round_index == 0 else "auto"
        return self.registry.request(self.enabled, choice)

    def run(self, messages: list[Message], generate: Generate,
            approve: Callable[[ToolEvent], bool] = lambda event: False,
            on_event: Callable[[ToolEvent], None] = lambda event: None,
            stop: threading.Event | None = None) -> str:
        """Run rounds until the model answers without calls; append every assistant
        turn, call and result to `messages`; return the final answer's text."""
        round_index = 0
        while True:
            content, calls = generate(messages, self.request(round_index))
            if not calls or round_index >= self.max_rounds or (stop is not None and stop.is_set()):
                messages.append({"role": "assistant", "content": content})
                return content
            messages.append({"role": "assistant", "content": content, "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls]})
            for call in calls:
                event = self.execute(call, approve, on_event)
                text = quoted_result(event.name, event.result) if event.status == "done" else event.result
                messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": text})
            round_index += 1

    def execute(self, call: ToolCall, approve: Callable[[ToolEvent], bool],
                on_event: Callable[[ToolEvent], None]) -> ToolEvent:
        """One call: approved (or safe), run within the time limit; never raises."""
        arguments = json.loads(call.arguments)
        try:
            tool = self.registry.get(call.name)
        except UserError as e:
            event = ToolEvent(call.id, call.name, arguments, False, "failed", str(e))
            on_event(event)
            return event
        event = ToolEvent(call.id, call.name, arguments, tool.safe)
        on_event(event)
        if not tool.safe and not approve(event):
            event.status, event.result = "denied", f"the user did not allow the call to {call.name}"
            on_event(event)
            return event
        event.status = "running"
        on_event(event)
        started = time.perf_counter()
        try:
            event.result = tool.invoke(arguments, self.call_timeout)
            event.status = "done"
        except ToolFailure as e:
            event.status, event.result = "failed", one_line(str(e))
        except Exception as e:  # noqa: BLE001 - a tool's own bug is a line, not a broken chat
            event.status, event.result = "failed", one_line(f"{call.name} failed: {type(e).__name__}: {e}")
        event.seconds = time.perf_counter() - started
        on_event(event)
        return event


@dataclass(frozen=True)
class ReplyDone:
    text: str


@dataclass(frozen=True)
class ReplyFailed:
    error: Exception


class ToolReply:
    """A tool loop in a thread of its own, for a face that shows it as it goes: its
    updates (each ToolEvent as it changes, then ReplyDone or ReplyFailed) come through
    `updates()`, and the user's Approve or Deny, from another request, through `decide`.
    A call left waiting longer than `approval_timeout` seconds is denied."""

    def __init__(self, loop: ToolLoop, messages: list[Message], generate: Generate,
                 approval_timeout: float = 600.0):
        self.loop = loop
        self.messages = messages
        self.generate = generate
        self.approval_timeout = approval_timeout
        self.pending: ToolEvent | None = None
        self.job: Any = None
        self.stopped = threading.Event()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._decided = threading.Event()
        self._approved = False
        self._lock = threading.Lock()
        # The caller's context vars go along: the loop's chat rounds and extension hooks
        # run for the same user (current_user()) as the chat that started it.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                        name="hearth-tool-loop", daemon=True)

    def start(self) -> ToolReply:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            text = self.loop.run(self.messages, self.generate, self._approve, self._emit, self.stopped)
            self._queue.put(ReplyDone(text))
        except Exception as e:  # noqa: BLE001 - a UserError is one line; anything else too
            self._queue.put(ReplyFailed(e))

    def _emit(self, event: ToolEvent) -> None:
        # A copy: the loop goes on changing its event while the face reads this one. A
        # call that asks first is told by _approve, once decide() can answer it.
        if event.status != "pending" or event.safe:
            self._queue.put(dataclasses.replace(event))

    def _approve(self, event: ToolEvent) -> bool:
        with self._lock:
            self.pending, self._approved = event, False
            self._decided.clear()
        self._queue.put(dataclasses.replace(event))
        decided = self._decided.wait(self.approval_timeout)
        with self._lock:
            self.pending = None
            return decided and self._approved and not self.stopped.is_set()

    def decide(self, approved: bool) -> bool:
        """The user's answer to the waiting call; False when none is waiting."""
        with self._lock:
            if self.pending is None:
                return False
            self._approved = approved
            self._decided.set()
            return True

    def watch(self, job: Any) -> None:
        """The generation job of the round in progress (anything with stop()): Stop stops it."""
        self.job = job
        if self.stopped.is_set():
            job.stop()

    def stop(self) -> None:
        self.stopped.set()
        self.decide(False)
        if self.job is not None:
            self.job.stop()

    def updates(self) -> Iterator[ToolEvent | ReplyDone | ReplyFailed]:
        while True:
            item = self._queue.get()
            yield item
            if isinstance(item, (ReplyDone, ReplyFailed)):
                return
