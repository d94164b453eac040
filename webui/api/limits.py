"""Size and queue limits, so one client cannot exhaust the machine's memory or park
thousands of requests in the queue that everyone (the UI too) shares."""
from __future__ import annotations

from webui.api.errors import APIError, error_body

API_PREFIX = "/v1/"


class BodySizeLimit:
    """ASGI middleware: an API request body over `max_bytes` is refused with 413
    before the app sees it. The body is read here (it is small by definition) and
    replayed, so the limit holds for chunked uploads that send no Content-Length."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(body)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # what comes next is the client hanging up

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        import json

        mib = self.max_bytes / (1 << 20)
        body = json.dumps(error_body(413, f"the request body is larger than this server's limit of "
                                          f"{mib:g} MiB (--max-request-mb)", code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def check_prompt_size(chars: int, max_chars: int, param: str) -> None:
    if chars > max_chars:
        raise APIError(400, f"the prompt is {chars} characters; this server takes at most {max_chars} "
                            "(--max-prompt-chars)", param=param, code="prompt_too_long")


def check_queue(queue_length: int, max_queue: int) -> None:
    if queue_length >= max_queue:
        raise APIError(429, f"the generation queue is full ({queue_length} requests waiting); "
                            "try again shortly", code="queue_full")
