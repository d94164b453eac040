"""uvicorn's server with a once-a-second housekeeping tick while it has connections,
and every 30 s without.

uvicorn 0.54's `Server.main_loop` wakes every 0.1 s to refresh the Date header (once a
second: every tenth tick) and to see whether a signal asked it to stop. On an idle
machine each wake-up of the loop costs 1.5-5 ms of CPU (docs/BENCHMARKS.md, "Idle
cost"), so this loop ticks once a second only while a connection is open, refreshing
the Date header every tick (as fresh as before), and every IDLE_TICK_S when none is. A
new connection refreshes the Date header at once (as uvicorn's tick does: the first
response after a quiet spell gets a fresh one) and wakes the loop; so does a signal, so Ctrl-C and SIGTERM stop the server as promptly as before."""
from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

TICK_S = 1.0
IDLE_TICK_S = 30.0


class _WakingSet(set):
    """uvicorn's set of open connections, calling `added` when one is added."""

    def __init__(self, items, added) -> None:
        super().__init__(items)
        self._added = added

    def add(self, item) -> None:
        super().add(item)
        self._added()


def quiet_uvicorn_server(config: Any) -> Any:
    """A uvicorn Server for `config` (a uvicorn.Config) that ticks as described above."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        _wake: asyncio.Event | None = None
        _loop: asyncio.AbstractEventLoop | None = None

        async def main_loop(self) -> None:
            self._loop = asyncio.get_running_loop()
            self._wake = wake = asyncio.Event()
            state = self.server_state
            # Protocols add themselves in connection_made, on this loop's thread.
            state.connections = _WakingSet(state.connections, self._connected)
            # on_tick(0): counter 0 is the tick on which uvicorn refreshes the Date header.
            while not await self.on_tick(0):
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), TICK_S if state.connections else IDLE_TICK_S)
                except TimeoutError:
                    pass

        def _connected(self) -> None:
            # uvicorn's on_tick, its Date part: responses take server_state.default_headers.
            date = [(b"date", formatdate(time.time(), usegmt=True).encode())] if self.config.date_header else []
            self.server_state.default_headers = date + self.config.encoded_headers
            if self._wake is not None:
                self._wake.set()

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # A Python signal handler runs in the main thread between bytecodes, maybe
            # in the middle of the loop's own code: only call_soon_threadsafe is safe.
            if self._loop is not None and self._wake is not None:
                self._loop.call_soon_threadsafe(self._wake.set)

    return QuietServer(config)
