"""uvicorn's server with a once-a-second housekeeping tick instead of ten.

uvicorn 0.54's `Server.main_loop` wakes every 0.1 s to refresh the Date header (once a
second: every tenth tick) and to see whether a signal asked it to stop. An idle
Hearth spent about half of what was left of its idle CPU after the Gradio queue
stopped polling (webui/ui/quiet_queue.py) on those wake-ups (docs/BENCHMARKS.md,
"Idle cost"). This loop ticks once a second, refreshing the Date header every tick (so
it is exactly as fresh as before), and a signal wakes it at once, so Ctrl-C and
SIGTERM stop the server as promptly as before."""
from __future__ import annotations

import asyncio
from typing import Any

TICK_S = 1.0


def quiet_uvicorn_server(config: Any) -> Any:
    """A uvicorn Server for `config` (a uvicorn.Config) that ticks every TICK_S."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        _wake: asyncio.Event | None = None
        _loop: asyncio.AbstractEventLoop | None = None

        async def main_loop(self) -> None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            # on_tick(0): counter 0 is the tick on which uvicorn refreshes the Date header.
            while not await self.on_tick(0):
                try:
                    await asyncio.wait_for(self._wake.wait(), TICK_S)
                except TimeoutError:
                    pass

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # A Python signal handler runs in the main thread between bytecodes, maybe
            # in the middle of the loop's own code: only call_soon_threadsafe is safe.
            if self._loop is not None and self._wake is not None:
                self._loop.call_soon_threadsafe(self._wake.set)

    return QuietServer(config)
