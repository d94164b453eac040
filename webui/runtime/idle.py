"""--idle-unload: the loaded model is unloaded after so long without a request, and
the next request that needs it loads it again with the same options
(ModelManager.resume; the faces say so while it waits).

One thread that sleeps until the model could first be idle long enough, looks, and
sleeps again: it never polls faster than the idle time itself, and with no model
loaded it sleeps until one is, so a Hearth with nothing to do stays asleep
(docs/BENCHMARKS.md, "Idle cost")."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from webui.runtime.model_manager import ModelManager

log = logging.getLogger(__name__)


class IdleUnloader:
    def __init__(self, manager: ModelManager, minutes: float, queued: Callable[[], int] = lambda: 0):
        """Unload `manager`'s model after `minutes` without a request, unless `queued()`
        replies wait for it."""
        if minutes <= 0:
            raise ValueError("idle minutes must be positive")
        self.manager = manager
        self.seconds = minutes * 60
        self._queued = queued
        self._stopped = threading.Event()
        self._wake = threading.Event()  # a model was loaded, or stop()
        manager.on_load(lambda _loaded: self._wake.set())
        manager.touch()  # idle from now: not from a load that may have ended long before
        self._thread = threading.Thread(target=self._run, name="hearth-idle-unload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.is_set():
            # Cleared before looking, so a load that lands between the look and the
            # wait still wakes the wait.
            self._wake.clear()
            if self.manager.current is None:
                # Nothing to unload (none loaded, or already unloaded for idling)
                # until a load, which wakes this.
                self._wake.wait()
                continue
            # Requests move the idle clock on, so the wait is recomputed from it each
            # time: the model goes `seconds` after the last one, never sooner.
            left = self.seconds - self.manager.idle_seconds
            if left > 0:
                self._stopped.wait(left)
                continue
            try:
                unloaded = self.manager.unload_if_idle(self.seconds, busy=lambda: self._queued() > 0)
            except Exception:  # a backend's unload failing must not end idle unloading
                log.exception("unloading the idle model failed")
                unloaded = None
            if unloaded is None and self.manager.idle_seconds >= self.seconds:
                # Busy (a reply running or queued): nothing can be due before another
                # whole idle time has passed. (Unloaded: the next pass sleeps until a
                # load; a request just came: the next pass waits from it.)
                self._stopped.wait(self.seconds)
