"""A GenerationJob seen from the event loop, tied to the life of its HTTP request.

The job's events come from the generation thread, which wakes the loop itself
(`GenerationJob.listen`): at most one wake-up is pending at a time, and the loop takes
every event that has arrived when it wakes, so a client that keeps up gets each token
as it comes and one that falls behind gets the pieces that piled up as one. No thread
blocks on the job, and no event-loop thread ever blocks on it either. A second task watches the connection: when the client hangs up, the job
is stopped at once (at its next token if it is running, before it starts if it is
still queued). Each request stops only its own job.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from webui.runtime.generation import Delta, Failed, Finished, GenerationJob

Receive = Callable[[], Awaitable[dict]]


class Text(str):
    """Text pieces that arrived together, as one string; with a job that asked for
    logprobs, `logprobs` holds their tokens' (webui.runtime.generation.Delta)."""

    logprobs: tuple = ()

    @classmethod
    def of(cls, text: str, logprobs: tuple) -> Text:
        out = cls(text)
        out.logprobs = logprobs
        return out


async def _stop_on_disconnect(receive: Receive, job: GenerationJob) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            job.stop()
            return


class _LoopWaker:
    """Called by the generation thread after each event: schedules one wake-up of the
    loop unless one is already pending (the loop clears `pending` before it takes the
    events, so an event is always either taken by that pass or followed by a wake-up)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, job: GenerationJob):
        self.loop = loop
        self.job = job
        self.ready = asyncio.Event()
        self.pending = False

    def __call__(self) -> None:
        if self.pending:
            return
        self.pending = True
        try:
            self.loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:  # the loop is closed: the server is shutting down
            self.job.stop()


async def job_events(job: GenerationJob, receive: Receive) -> AsyncIterator[str | Finished | Failed]:
    """Text (the pieces that arrived together, as one string), then Finished or Failed."""
    waker = _LoopWaker(asyncio.get_running_loop(), job)
    job.listen(waker)
    watcher = asyncio.create_task(_stop_on_disconnect(receive, job))
    try:
        while True:
            await waker.ready.wait()
            waker.ready.clear()
            waker.pending = False
            text, logprobs, end = [], [], None
            for event in job.ready():
                if isinstance(event, Delta):
                    text.append(event.text)
                    logprobs.extend(event.logprobs)
                else:
                    end = event
            if any(text) or logprobs:
                yield Text.of("".join(text), tuple(logprobs))
            if end is not None:
                yield end
                return
    finally:
        watcher.cancel()
        # Whoever stops reading (a client that left, an error) must not leave the
        # model generating for nobody; on a finished job this does nothing.
        job.stop()


def sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False,
                                                               separators=(",", ":"))
    return f"data: {data}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
