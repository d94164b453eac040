"""Answers sent from ASGI middleware, before any route runs: the same one-line,
OpenAI-shaped error body the routes send."""
from __future__ import annotations

import json
from collections.abc import Iterable

from webui.api.errors import error_body


def refusal_body(status: int, message: str, code: str) -> dict:
    body = error_body(status, message, code=code)
    if status < 500 and body["error"]["type"] == "server_error":
        # error_body names the types of the statuses routes answer; these are the client's doing too.
        body["error"]["type"] = "invalid_request_error"
    return body


async def send_json(send, status: int, body: dict, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *extra_headers]})
    await send({"type": "http.response.body", "body": data})


async def send_refusal(send, status: int, message: str, code: str,
                       extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send_json(send, status, refusal_body(status, message, code), extra_headers)
