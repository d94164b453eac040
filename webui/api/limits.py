"""Size, time and queue limits, so one client cannot exhaust the machine's memory,
hold its connections open, or park thousands of requests in the queue that everyone
(the UI too) shares."""
from __future__ import annotations

import asyncio
import time

from webui.api.errors import APIError
from webui.api.responses import send_refusal

API_PREFIX = "/v1/"


class BodySizeLimit:
    """ASGI middleware for every request of the app: a body over its path's limit is
    refused with 413, and one that has not fully arrived `timeout` seconds after the
    request began with 408. The body is counted as the app reads it, so nothing is
    buffered here and the limit holds for chunked uploads that send no Content-Length.

    `larger`: path prefixes allowed another size (the UI's file uploads), each with
    the flag that sets it, for the refusal to name."""

    def __init__(self, app, max_bytes: int, timeout: float, larger: dict[str, tuple[int, str]] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.larger = dict(larger or {})

    def limit_for(self, path: str) -> tuple[int, str]:
        return next((size for prefix, size in self.larger.items() if path.startswith(prefix)),
                    (self.max_bytes, "--max-request-mb"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, flag = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(send, limit, flag)
            return
        deadline = time.monotonic() + self.timeout
        received = 0
        complete = False
        refused = False
        started = False

        async def counted_receive():
            nonlocal received, complete, refused
            if complete or refused:
                return await receive()  # the body is in: what comes next is the client hanging up
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                await refuse(408, self._late)
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    await refuse(413, lambda s: self._too_large(s, limit, flag))
                    return {"type": "http.disconnect"}
                complete = not message.get("more_body", False)
            return message

        async def refuse(status: int, answer) -> None:
            nonlocal refused
            refused = True
            if not started:
                await answer(send)

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the refusal was the answer: the app's own, to a body it never got, is dropped
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise  # the app failed on a body it never fully got: the refusal said why

    async def _too_large(self, send, limit: int, flag: str) -> None:
        await send_refusal(send, 413, f"the request body is larger than this server's limit of "
                                      f"{limit / (1 << 20):g} MiB ({flag})", "request_too_large",
                           [(b"connection", b"close")])

    async def _late(self, send) -> None:
        await send_refusal(send, 408, f"the request body did not arrive within {self.timeout:g} s "
                                      "(--body-timeout)", "request_timeout", [(b"connection", b"close")])


def check_prompt_size(chars: int, max_chars: int, param: str) -> None:
    if chars > max_chars:
        raise APIError(400, f"the prompt is {chars} characters; this server takes at most {max_chars} "
                            "(--max-prompt-chars)", param=param, code="prompt_too_long")


def check_queue(queue_length: int, max_queue: int) -> None:
    if queue_length >= max_queue:
        raise APIError(429, f"the generation queue is full ({queue_length} requests waiting); "
                            "try again shortly", code="queue_full")
