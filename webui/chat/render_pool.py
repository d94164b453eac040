"""Rendering untrusted chat templates with a time and a memory bound: in render
processes that can be killed.

Why processes: a Jinja template is a program. The sandbox stops it reaching Python's
internals, but not `{% for a in range(99999) %}{% for b in range(99999) %}` (ten
billion empty steps), nor loops over a long message nested twice, nor a string
doubled thirty times (a gigabyte). Python cannot interrupt a thread, and an
in-process bound would have to instrument every loop, call and filter Jinja compiles
and still could not cap memory (limits are per process). A child process can be
killed on a wall-clock limit and can hold its own RLIMIT_AS.

The shape: up to MAX_PROCESSES long-lived render processes (render_worker.py),
started on demand and reused, each taking one batch of renders at a time over its
pipes (one JSON line each way). A batch that runs past its time limit, or whose
caller is stopped, gets its process killed; the next render starts a fresh one. A
process that runs out of memory answers so and ends itself. Several processes, so
that one hostile template never makes another person's render wait behind it.

Costs, measured on a loaded 2-core machine: starting a process ~190 ms (on first use
and after a kill: Python and Jinja's import; not counted in the time limit); one
render of SmolLM2's own template 0.1-0.3 ms more than in-process (templates.py has
the per-turn number); 23 MB resident per idle process.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from webui.chat.render_worker import encode_line
from webui.chat.sandbox import MAX_OUTPUT_CHARS, ChatTemplateError
from webui.errors import ErrorKind

log = logging.getLogger(__name__)

MAX_PROCESSES = 4
START_TIMEOUT_S = 30.0  # a loaded machine can take seconds to start Python; not the template's fault
POLL_S = 0.05  # how often a waiting render looks at its Stop: Stop takes effect within 50 ms
# The longest reply a render may send back: MAX_OUTPUT_CHARS as JSON text (at most 6
# bytes a character, for an escaped control character) per render, for a batch of a few.
MAX_REPLY_BYTES = 8 * 6 * MAX_OUTPUT_CHARS
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


class RenderCutOff(ChatTemplateError):
    """A render ended by a bound (time, memory) or by Stop, not by the template's own
    answer. Never remembered as the template's verdict: the same render may pass later."""


class RenderStopped(RenderCutOff):
    """The render was stopped because its reply was (the user pressed Stop)."""

    kind = ErrorKind.CONFLICT

    def __init__(self) -> None:
        super().__init__("the reply was stopped while its chat template was rendering")


class _Stopped(Exception):
    pass


class _TimedOut(Exception):
    pass


class _Gone(Exception):
    """The process ended (or sent nonsense): it cannot be reused."""


class _GoneBefore(_Gone):
    """The process had ended before it was given the request."""


class RenderProcess:
    """One render process and its pipes. Not thread-safe: the pool lends it to one
    caller at a time."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        # A session of its own: Ctrl-C in Hearth's terminal is Hearth's to handle, and
        # does not kill a render process half-way through a reply.
        self._proc = subprocess.Popen([sys.executable, "-m", "webui.chat.render_worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                      start_new_session=True)
        self._pending = bytearray()
        try:
            ready = self._read_reply(time.monotonic() + START_TIMEOUT_S, None)
        except (_Gone, _TimedOut):
            self.kill()
            raise OSError("the render process did not start") from None
        if not ready.get("ready"):
            self.kill()
            raise OSError("the render process did not start")

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def run(self, payload: bytes, deadline: float, stopped: Callable[[], bool] | None) -> dict[str, Any]:
        """Send one request line and wait for its reply line."""
        try:
            self._proc.stdin.write(payload)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise _GoneBefore() from None
        return self._read_reply(deadline, stopped)

    def _read_reply(self, deadline: float, stopped: Callable[[], bool] | None) -> dict[str, Any]:
        fd = self._proc.stdout.fileno()
        while (end := self._pending.find(b"\n")) < 0:
            if stopped is not None and stopped():
                raise _Stopped()
            left = deadline - time.monotonic()
            if left <= 0:
                raise _TimedOut()
            ready, _, _ = select.select([fd], [], [], min(left, POLL_S))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk or len(self._pending) + len(chunk) > MAX_REPLY_BYTES:
                raise _Gone()
            self._pending += chunk
        line = bytes(self._pending[:end])
        del self._pending[:end + 1]
        try:
            reply = json.loads(line.decode("utf-8", "surrogatepass"))
        except ValueError:
            raise _Gone() from None
        if not isinstance(reply, dict):
            raise _Gone()
        return reply

    def kill(self) -> None:
        try:
            self._proc.kill()
        except OSError:
            pass
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class RenderPool:
    """Lends render processes to callers, one caller each, starting them on demand."""

    def __init__(self, max_processes: int = MAX_PROCESSES):
        self.max_processes = max_processes
        self._idle: list[RenderProcess] = []
        self._busy: set[RenderProcess] = set()
        self._starting = 0
        self._closed = False
        self._cond = threading.Condition()
        self.started = 0  # processes started in this pool's life (for tests)

    def pids(self) -> list[int]:
        """The render processes alive now, idle or busy (for tests and diagnostics)."""
        with self._cond:
            return [p.pid for p in (*self._idle, *self._busy)]

    def render(self, calls: Sequence[dict[str, Any]], timeout_s: float,
               stopped: Callable[[], bool] | None = None,
               limit_s: float | None = None) -> tuple[list[str | ChatTemplateError], float]:
        """Render a batch in one process within `timeout_s` of its work (starting a
        process or waiting for a free one is not counted). Returns, per call, its text
        or the template's own error, and the seconds spent. Raises RenderCutOff when
        time or memory ran out or `stopped()` became true, the batch unfinished; its
        message names `limit_s` (the caller's whole budget, of which `timeout_s` is
        what is left)."""
        payload = encode_line({"renders": list(calls)})
        for attempt in range(2):
            process = self._take(stopped)
            started = time.monotonic()
            keep = False
            try:
                reply = process.run(payload, started + max(timeout_s, 0.0), stopped)
                keep = "results" in reply
            except _GoneBefore:
                if attempt == 0:
                    continue  # it had died while idle (the OOM killer, say): one fresh try
                raise RenderCutOff("the chat template's render process ended before it began") from None
            except _Gone:
                raise RenderCutOff("the chat template crashed its render process") from None
            except _TimedOut:
                limit = limit_s if limit_s is not None else timeout_s
                raise RenderCutOff(f"the chat template took longer than {limit:g} s to render; "
                                   "it was stopped") from None
            except _Stopped:
                raise RenderStopped() from None
            finally:
                self._give_back(process, keep)
            spent = time.monotonic() - started
            if "cutoff" in reply:
                raise RenderCutOff(str(reply["cutoff"]))
            if not keep or not isinstance(reply["results"], list) or len(reply["results"]) != len(calls):
                raise RenderCutOff("the chat template's render process sent a broken reply")
            return [r["text"] if "text" in r else ChatTemplateError(r.get("error", ""))
                    for r in reply["results"]], spent
        raise AssertionError("unreachable")

    def _take(self, stopped: Callable[[], bool] | None) -> RenderProcess:
        with self._cond:
            while True:
                if self._closed:
                    raise RenderCutOff("Hearth is shutting down: the chat template was not rendered")
                while self._idle:
                    process = self._idle.pop()
                    if process.alive():
                        self._busy.add(process)
                        return process
                    process.kill()
                if len(self._busy) + self._starting < self.max_processes:
                    self._starting += 1
                    break
                if stopped is not None and stopped():
                    raise RenderStopped()
                self._cond.wait(POLL_S)
        try:
            process = RenderProcess()
        except OSError as e:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            log.error("could not start a render process: %s", e)
            raise RenderCutOff(f"could not start a process to render the chat template: {e}") from None
        with self._cond:
            self._starting -= 1
            self.started += 1
            self._busy.add(process)
        return process

    def _give_back(self, process: RenderProcess, keep: bool) -> None:
        with self._cond:
            keep = keep and not self._closed
        if not keep:
            process.kill()
        with self._cond:
            self._busy.discard(process)
            if keep:
                self._idle.append(process)
            self._cond.notify()

    def close(self) -> None:
        """Kill every idle process; busy ones are killed when given back."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._closed = True
            self._cond.notify_all()
        for process in idle:
            process.kill()


RENDER_POOL = RenderPool()
atexit.register(RENDER_POOL.close)


def render_call(template: str, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "", **extra: Any) -> dict[str, Any]:
    """One render, as the render process reads it."""
    return {"template": template, "messages": [dict(m) for m in messages],
            "add_generation_prompt": bool(add_generation_prompt), "bos_token": bos_token,
            "eos_token": eos_token, "extra": extra}
