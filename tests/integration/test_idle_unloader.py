"""--idle-unload's thread: it unloads the model after the idle time, sleeps (not once
woken) while nothing is loaded, and wakes for the next load, counting idle time from
that load. The real model through a real ModelManager; the server-level behaviour
(the UI's notice, the API's answer) is tests/integration/test_idle.py."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.support import eventually
from webui.runtime.idle import IdleUnloader
from webui.runtime.model_manager import ModelManager

IDLE_MINUTES = 0.01  # 0.6 s


def times_scheduled(thread: threading.Thread) -> int:
    """How many times the kernel has run the thread (the third field of its schedstat)."""
    return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[2])


def test_the_idle_thread_sleeps_while_unloaded_and_counts_idle_time_from_the_next_load(default_model):
    models = ModelManager()
    models.load(default_model, "llama.cpp", {"n_ctx": 256})
    unloader = IdleUnloader(models, IDLE_MINUTES)
    try:
        eventually(lambda: models.parked is not None, what="the idle model to be unloaded")
        assert models.current is None
        time.sleep(0.2)  # the pass that unloaded has gone back to sleep
        runs = times_scheduled(unloader._thread)
        time.sleep(5 * IDLE_MINUTES * 60)
        assert times_scheduled(unloader._thread) == runs, "the idle thread woke with nothing loaded"

        # Loaded again long after the last request: idle from the load, not from then.
        models.load(default_model, "llama.cpp", {"n_ctx": 256})
        loaded_at = time.monotonic()
        eventually(lambda: models.parked is not None, what="the reloaded model to be unloaded")
        assert time.monotonic() - loaded_at >= IDLE_MINUTES * 60 * 0.9
    finally:
        started = time.monotonic()
        unloader.stop()  # wakes the thread asleep until a load
        assert time.monotonic() - started < 1
        models.unload()
