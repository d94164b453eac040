"""Gradio's event queue, woken by work instead of polling for it.

Gradio 6.31's `Queue.start_processing` looks for a queued event every 1 ms and
`start_progress_updates` for progress to send every 10 ms, even with nothing queued or
running: an idle Hearth with no browser open spent 1.2-3.0 CPU-seconds per 30 s on its
main thread doing that (docs/BENCHMARKS.md, "Idle cost"). `QuietQueue` runs the same
two loops, but where Gradio sleeps because there is nothing to do, it waits on an
`asyncio.Event` that `push` (the one place Gradio queues an event) and the end of
every event (a worker slot or a concurrency slot comes free) set; progress is looked
at only while events run. An event starts as soon as it is pushed, as before.

The loops are copies of Gradio's with only the idle sleeps replaced, so they are
checked against the installed Gradio: `GRADIO_SOURCES` holds the SHA-256 of each
method they stand in for, `quiet_gradio_queue` leaves Gradio's own queue in place (and
says so in the log) when the installed code differs, and a unit test fails on such an
upgrade so the copies are redone rather than silently drifting."""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from typing import Any

from gradio import queueing, route_utils
from gradio.utils import run_coro_in_background, set_task_name

log = logging.getLogger(__name__)

# SHA-256 of inspect.getsource() of the Gradio 6.31.0 methods QuietQueue replaces.
GRADIO_SOURCES = {
    "start_processing": "d65be5a5cbed97d7",
    "start_progress_updates": "7cbbec1cf932324c",
    "route_utils._delete_state": "e4d17520116a94c0",
}

# Waits end at least this often even without a wake-up: if a Gradio release queued
# events some other way than `push`, they would start late, not never. On an idle
# machine each wake-up of the server's loop costs 1.5-2.5 ms of CPU (measured with
# /proc/PID/task/*/schedstat: cold caches, low clocks), so the backstop is rare.
BACKSTOP_S = 5.0
# Gradio sweeps expired session state every second (route_utils._delete_state), a
# wake-up a second for state that lives for hours; every 30 s is as good.
STATE_SWEEP_S = 30.0


def source_digest(name: str) -> str:
    """The first 16 hex digits of the SHA-256 of the installed Gradio Queue method's (or,
    as "route_utils.NAME", function's) source."""
    module, _, function = name.rpartition(".")
    code = _GRADIO_FUNCTIONS[function] if module == "route_utils" else getattr(queueing.Queue, name)
    return hashlib.sha256(inspect.getsource(code).encode()).hexdigest()[:16]


# Gradio's own, kept before quiet_gradio_queue replaces it (the digest is of Gradio's code).
_GRADIO_FUNCTIONS = {"_delete_state": route_utils._delete_state}


async def _delete_state(app: Any) -> None:
    """Gradio's expired-state sweep, every STATE_SWEEP_S instead of every second."""
    while True:
        app.state_holder.delete_all_expired_state()
        await asyncio.sleep(STATE_SWEEP_S)


def gradio_matches() -> list[str]:
    """The replaced methods whose installed source differs from the one copied (none: safe to use)."""
    return [name for name, digest in GRADIO_SOURCES.items() if source_digest(name) != digest]


class QuietQueue(queueing.Queue):
    _work: asyncio.Event  # something may be startable: an event was pushed, or a slot came free
    _running: asyncio.Event  # an event was dispatched: progress may need sending

    @classmethod
    def adopt(cls, queue: queueing.Queue) -> QuietQueue:
        """Turn the queue a Blocks made into a QuietQueue, keeping all its state (its
        settings and Gradio's own attributes), before the app starts it."""
        queue.__class__ = cls
        queue._work = asyncio.Event()
        queue._running = asyncio.Event()
        return queue

    async def push(self, *args: Any, **kwargs: Any):
        try:
            return await super().push(*args, **kwargs)
        finally:
            self._work.set()

    async def process_events(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().process_events(*args, **kwargs)
        finally:
            self._work.set()  # its worker slot and concurrency slot are free again

    def close(self) -> None:
        super().close()
        self._work.set()
        self._running.set()

    async def _idle(self, event: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(event.wait(), BACKSTOP_S)
        except TimeoutError:
            pass

    async def start_processing(self) -> None:
        # Gradio's loop; `await self._idle(self._work)` where it sleeps 1 ms. The flag
        # is cleared before the checks, so a push during any await below is not missed.
        try:
            while not self.stopped:
                self._work.clear()
                if len(self) == 0:
                    await self._idle(self._work)
                    continue

                if None not in self.active_jobs:
                    await self._idle(self._work)
                    continue

                # Using mutex to avoid editing a list in use
                async with self.delete_lock:
                    event_batch = self.get_events()

                if event_batch:
                    events, batch, concurrency_id = event_batch
                    self.active_jobs[self.active_jobs.index(None)] = events
                    event_queue = self.event_queue_per_concurrency_id[concurrency_id]
                    event_queue.current_concurrency += 1
                    start_time = time.time()
                    fn = events[0].fn
                    event_queue.start_times_per_fn[fn].add(start_time)
                    for event in events:
                        if (a := self.event_analytics.get(event._id)) is not None:
                            a["status"] = "processing"
                    process_event_task = run_coro_in_background(
                        self.process_events, events, batch, start_time, fn
                    )
                    set_task_name(
                        process_event_task,
                        events[0].session_hash,
                        fn._id,
                        events[0]._id,
                        batch,
                    )

                    self._asyncio_tasks.add(process_event_task)
                    process_event_task.add_done_callback(self._asyncio_tasks.discard)
                    self._running.set()
                    if self.live_updates:
                        self.broadcast_estimations(concurrency_id)
                else:
                    await self._idle(self._work)
        finally:
            self.stopped = True
            self._cancel_asyncio_tasks()

    async def start_progress_updates(self) -> None:
        # Gradio's loop; with no event running it waits for one to be dispatched
        # instead of looking again in 10 ms. While events run, the 10 ms stays.
        while not self.stopped:
            self._running.clear()
            events = [evt for job in self.active_jobs if job is not None for evt in job]

            if len(events) == 0:
                await self._idle(self._running)
                continue

            for event in events:
                if event.progress_pending and event.progress:
                    event.progress_pending = False
                    self.send_message(event, event.progress)

            await asyncio.sleep(self.progress_update_sleep_when_free)


def quiet_gradio_queue(blocks: Any) -> bool:
    """Give `blocks` (not yet started) a QuietQueue; False, with Gradio's own queue
    kept, when the installed Gradio's loops are not the ones QuietQueue copies."""
    changed = gradio_matches()
    if changed:
        log.warning("Gradio's queue code changed (%s): keeping its polling queue, which costs CPU while idle",
                    ", ".join(changed))
        return False
    QuietQueue.adopt(blocks._queue)
    route_utils._delete_state = _delete_state  # looked up when the app starts its lifespan
    return True
