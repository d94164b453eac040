"""--idle-unload's part in the server: every request starts the idle clock again, and
an API call that needs the model finds it loaded again.

The API's routes check for a loaded model on the event loop, before they hand the
request to a thread; loading there would stop every other request for the length of
a load. So this middleware, inside the API key check, loads a model that was
unloaded for being idle in a worker thread first, and the route finds it as it was
(the client just waits longer). A reload that fails is that one request's one-line
503; the next tries again. The UI's handlers run in threads and load it through the
core (ModelManager.resume), with a notice (webui/ui/idle_notice.py).

Plain ASGI, no web framework: the app imports this module at start-up for nothing."""
from __future__ import annotations

import asyncio
import json
import logging

from loaders.errors import UserError
from webui.runtime.idle import IdleUnloader
from webui.runtime.model_manager import ModelManager

log = logging.getLogger(__name__)

API_PREFIX = "/v1/"
# Requests that may use the model while they are served: the API's and the extensions'
# routes. Not the UI's: a page holds its event streams open as long as it is open, and
# its handlers hold the model themselves (ModelManager.use, borrow, resume).
SERVED_PREFIXES = (API_PREFIX, "/extensions/")
# The API calls that replace or drop the model: loading the idle one first would be wasted.
NO_MODEL_NEEDED = ("/v1/internal/model/load", "/v1/internal/model/unload")
# Polled by monitors: such a request is not a use, or the model would never go idle.
NOT_A_USE = ("/healthz",)


def needs_model(method: str, path: str) -> bool:
    """An API call that reads or drives the loaded model (every POST but a load or an unload)."""
    return method == "POST" and path.startswith(API_PREFIX) and path not in NO_MODEL_NEEDED


def _failure(message: str) -> bytes:
    return json.dumps({"error": {"message": " ".join(message.split()), "type": "server_error", "param": None,
                                 "code": "model_not_loaded"}}).encode()


class WakeIdleModel:
    """ASGI middleware: every request but NOT_A_USE restarts the idle clock, an API or
    extension request keeps the model from going idle until it has been answered, and
    an API call that needs an idle-unloaded model finds it loaded again."""

    def __init__(self, app, models: ModelManager):
        self.app = app
        self.models = models

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path") in NOT_A_USE:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if not path.startswith(SERVED_PREFIXES):
            self.models.touch()
            await self.app(scope, receive, send)
            return
        with self.models.serving():
            await self._serve(scope, receive, send)

    async def _serve(self, scope, receive, send) -> None:
        if self.models.parked is not None and needs_model(scope.get("method", ""), scope.get("path", "")):
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.models.resume)
            except UserError as e:
                body = _failure(e.message)
                await send({"type": "http.response.start", "status": 503,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def start_idle_unload(models: ModelManager, minutes: float, queued) -> IdleUnloader | None:
    """The --idle-unload thread, or None for 0 (never)."""
    if minutes <= 0:
        return None
    log.info("the model is unloaded after %g minutes without a request", minutes)
    return IdleUnloader(models, minutes, queued)
