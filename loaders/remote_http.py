"""The remote loader's side of HTTP: the engine's address, parsed and checked, and
the engine's replies, read within bounds.

A load request names the engine's URL, so the URL is the caller's, and whatever
answers there is untrusted: a reply is read up to a size, parsed without trusting
its shape, and an error never quotes a reply's body (at most the short, printable
message of an OpenAI-style error object). Endpoint URLs are built by replacing the
path of the parsed base URL, never by pasting strings, so no caller-given query or
fragment can choose what is requested.

`httpx` is used through the client and responses the loader passes in.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from loaders.base import GenerationError, LoadError

# /v1/models, /props and a tokenizer's answer are KBs (a props with a long chat
# template, tens of KBs); an error body is a line. A reply past this is refused.
MAX_REPLY_BYTES = 4 << 20
# One server-sent event line holds one token's chunk: a few hundred bytes.
MAX_LINE_CHARS = 1 << 20
_MAX_REASON = 160
_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def engine_base(url: str) -> str:
    """The engine's root URL, scheme://host[:port][/prefix], from what a user gave:
    "http://host:8000/v1/" and "http://host:8000" both mean the engine at its root.
    Anything but a plain http(s) address is refused in one line."""
    text = str(url).strip()
    if any(ord(c) < 33 or c == "\x7f" for c in text):
        raise LoadError("the engine URL must not contain spaces or control characters")
    if "?" in text or "#" in text:
        raise LoadError("the engine URL must not have a query (?) or a fragment (#): give only scheme, host, "
                        "port and path, like http://127.0.0.1:8080")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise LoadError("the engine URL is not a valid URL; give one like http://127.0.0.1:8080") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise LoadError("the engine URL must start with http:// or https://")
    if "@" in parts.netloc:
        raise LoadError("the engine URL must not hold a user name or password; give the key as remote_api_key")
    if not parts.hostname:
        raise LoadError("the engine URL has no host; give one like http://127.0.0.1:8080")
    path = parts.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    if not _PATH.fullmatch(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise LoadError("the engine URL's path may hold only plain names (letters, digits, . _ ~ -)")
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def endpoint(base: str, path: str) -> str:
    """The URL of `path` (say "/v1/models") on the engine at `base` (an engine_base)."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


def same_engine(a: str, b: str) -> bool:
    """Whether two engine_base URLs name the same engine (default ports spelt or not)."""
    pa, pb = urlsplit(a), urlsplit(b)

    def key(p):
        return (p.scheme, (p.hostname or "").lower(), p.port or _DEFAULT_PORTS.get(p.scheme), p.path.rstrip("/"))

    return key(pa) == key(pb)


def printable(text: str, limit: int = _MAX_REASON) -> str:
    """`text` as one short line of printable characters."""
    clean = "".join(c if c.isprintable() else " " for c in text)
    clean = " ".join(clean.split())
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def read_reply(response, limit: int = MAX_REPLY_BYTES) -> bytes | None:
    """A streamed response's body, or None when it is longer than `limit`."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes | None) -> Any:
    """The JSON value in `raw`, or None if it is none (too long, not JSON, nested
    past the decoder's recursion limit)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def engine_reason(raw: bytes | None) -> str:
    """": <message>" from an OpenAI-style error body ({"error": {"message": ...}}, or
    vLLM's {"object": "error", "message": ...}), printable and short; "" otherwise."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    if message is None and body.get("object") == "error":
        message = body.get("message")
    if not isinstance(message, str) or not printable(message):
        return ""
    return ": " + printable(message)


def request_json(client, method: str, url: str, **kwargs) -> tuple[int, Any, bytes | None]:
    """(status, parsed JSON or None, raw body or None if too long) of one request;
    httpx errors propagate."""
    with client.stream(method, url, **kwargs) as response:
        raw = read_reply(response)
        return response.status_code, parse_json(raw), raw


def post_for_generation(client, base: str, path: str, body: dict) -> dict:
    """POST `body` to the engine while serving a request; its JSON object reply, or a
    GenerationError in one line."""
    import httpx

    try:
        status, data, raw = request_json(client, "POST", endpoint(base, path), json=body)
    except httpx.HTTPError as e:
        raise GenerationError(unreachable(base, e)) from None
    if status != 200:
        raise GenerationError(f"the engine answered HTTP {status} to {path}{engine_reason(raw)}")
    if not isinstance(data, dict):
        raise GenerationError(f"the engine's reply to {path} is not a JSON object")
    return data


def unreachable(url: str, e: Exception) -> str:
    import httpx

    if isinstance(e, httpx.ConnectError):
        reason = "connection refused" if "refused" in str(e).lower() else (str(e) or "cannot connect")
    elif isinstance(e, httpx.TimeoutException):
        reason = "timed out"
    else:
        reason = str(e) or type(e).__name__
    return f"cannot reach the engine at {url}: {printable(reason, 200)}"


def bounded_lines(response) -> Iterator[str]:
    """The lines of a streamed reply; a line longer than MAX_LINE_CHARS is an error
    rather than a buffer that grows without end."""
    pending: list[str] = []  # the pieces of the line not yet ended
    size = 0
    for text in response.iter_text():
        *ended, rest = text.split("\n")
        if ended:
            ended[0] = "".join(pending) + ended[0]
            for line in ended:
                yield line.rstrip("\r")
            pending, size = [], 0
        pending.append(rest)
        size += len(rest)
        if size > MAX_LINE_CHARS:
            raise GenerationError(f"the engine sent a line longer than {MAX_LINE_CHARS >> 20} MiB")
    if "".join(pending):
        yield "".join(pending).rstrip("\r")
