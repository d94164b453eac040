"""A GenerationJob seen from the event loop, tied to the life of its HTTP request.

The job's events come from the generation thread; a small thread per request hands
them to the loop, so no event-loop thread ever blocks and Gradio's thread pool is
not taken. A second task watches the connection: when the client hangs up, the job
is stopped at once (at its next token if it is running, before it starts if it is
still queued). Each request stops only its own job.
"""
from __future__ import annotations

import asyncio
import json
import threading
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


async def job_events(job: GenerationJob, receive: Receive) -> AsyncIterator[str | Finished | Failed]:
    """Text (the pieces that arrived together, as one string), then Finished or Failed."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def pump() -> None:
        try:
            for event in job.events():
                loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the loop is closed: the server is shutting down
            job.stop()

    threading.Thread(target=pump, name="hearth-api-job", daemon=True).start()
    watcher = asyncio.create_task(_stop_on_disconnect(receive, job))
    try:
        while True:
            event = await events.get()
            text, logprobs = [], []
            while isinstance(event, Delta):
                text.append(event.text)
                logprobs.extend(event.logprobs)
                if events.empty():
                    event = None
                    break
                event = events.get_nowait()
            if any(text) or logprobs:
                yield Text.of("".join(text), tuple(logprobs))
            if event is not None:
                yield event
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
