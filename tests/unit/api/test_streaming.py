"""A job's events reach the event loop without a thread per request: the emitting
thread wakes the loop (GenerationJob.listen), one wake-up pending at a time. A reader
that keeps up gets every piece alone; pieces that piled up come as one; none is lost
however the two threads interleave. Real jobs and a real event loop; the emitting
thread stands in for the generation worker, which needs no model to emit."""
from __future__ import annotations

import asyncio
import threading

from loaders.params import GenerationParams
from tests.support import run_on_own_loop
from webui.api.streaming import job_events
from webui.runtime.generation import Delta, Finished, GenerationJob, GenerationStats

TIMEOUT_S = 20


async def never_hangs_up() -> dict:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def read_all(job: GenerationJob, after_each=None) -> list:
    async def read() -> list:
        out = []
        async for event in job_events(job, never_hangs_up):
            out.append(event)
            if after_each is not None:
                after_each(event)
        return out

    async def bounded() -> list:
        return await asyncio.wait_for(read(), TIMEOUT_S)

    return run_on_own_loop(bounded())


def test_events_emitted_before_reading_come_as_one_piece():
    job = GenerationJob("p", GenerationParams())
    for piece in ("a", "b", "c"):
        job.emit(Delta(piece))
    job.emit(Finished(GenerationStats()))
    out = read_all(job)
    assert out[0] == "abc" and isinstance(out[1], Finished) and len(out) == 2


def test_a_reader_that_keeps_up_gets_each_piece_alone():
    job = GenerationJob("p", GenerationParams())
    pieces = [f" t{i}" for i in range(20)]
    taken = threading.Semaphore(0)

    def worker() -> None:
        for piece in pieces:
            job.emit(Delta(piece))
            assert taken.acquire(timeout=TIMEOUT_S)  # the reader has sent it on
        job.emit(Finished(GenerationStats()))

    threading.Thread(target=worker, daemon=True).start()
    out = read_all(job, after_each=lambda event: taken.release())
    assert out[:-1] == pieces and isinstance(out[-1], Finished)


def test_no_piece_is_lost_when_the_threads_race():
    job = GenerationJob("p", GenerationParams())
    pieces = [str(i % 10) for i in range(5000)]

    def worker() -> None:
        for piece in pieces:
            job.emit(Delta(piece))
        job.emit(Finished(GenerationStats()))

    threading.Thread(target=worker, daemon=True).start()
    out = read_all(job)
    assert "".join(out[:-1]) == "".join(pieces) and isinstance(out[-1], Finished)


def test_a_reader_that_stops_stops_the_job():
    job = GenerationJob("p", GenerationParams())
    job.emit(Delta("a"))

    async def first_only() -> str:
        events = job_events(job, never_hangs_up)
        first = await anext(events)
        await events.aclose()
        return first

    assert run_on_own_loop(first_only()) == "a"
    assert job.cancel.is_set()
