"""The first check every request meets, for the whole app (the UI, the API, the
extensions' routes): it must name this server in its Host header, and it must not
come from a web page of another origin, unless it is an API call from an origin the
user listed with --cors-origins.

Browsers say where a request comes from (Origin on every cross-origin request but a
plain navigation or image load, Sec-Fetch-Site on all of them, Referer on most);
programs such as curl and the openai client send none of these and are not web
pages, so they pass (with their API key, when one is set). A page on another origin,
another local port included, can still link to the UI: a top-level navigation to a
page passes, any call to the UI's or the API's endpoints does not.

Plain ASGI, no web framework: the app imports this module at start-up for nothing."""
from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

from webui.app.hosts import ServedHosts, host_name

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# What an HTML form (or a fetch without a preflight) can send: the API takes JSON only,
# so a browser cannot change state with a "simple" request a preflight never vets.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}


def _netloc(url_scheme: str, host: str) -> tuple[str, int] | None:
    """("127.0.0.1", 7860) for host "127.0.0.1:7860" under http; None if unreadable."""
    try:
        parts = urlsplit(f"//{host}")
        return (parts.hostname or "").rstrip("."), parts.port or DEFAULT_PORTS.get(url_scheme, 80)
    except ValueError:
        return None


def same_origin(url: str, host_header: str, scheme: str) -> bool:
    """Whether `url` (an Origin or a Referer) is this server, as the request's Host names it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    theirs = _netloc(parts.scheme, parts.netloc.rsplit("@", 1)[-1])
    ours = _netloc(scheme, host_header)
    return theirs is not None and theirs == ours


def foreign_origin(headers: dict[str, str], scheme: str) -> str | None:
    """The origin of the web page that sent this request, if it is not this server's
    own; None for a same-origin request or one no browser marked (curl, openai)."""
    host = headers.get("host", "")
    origin = headers.get("origin")
    if origin is not None:
        return None if same_origin(origin, host, scheme) else origin
    site = headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):  # same-site: another port of this machine, say
        return site
    if site in ("same-origin", "none"):
        return None
    referer = headers.get("referer")
    if referer and not same_origin(referer, host, scheme):
        return urlsplit(referer)._replace(path="", query="", fragment="").geturl() or "another site"
    return None


def _is_navigation(method: str, headers: dict[str, str]) -> bool:
    """A top-level page load (a link followed), which reads nothing back to the linking
    page. Not a frame: a page that framed the UI could trick clicks into it."""
    return (method in ("GET", "HEAD") and "origin" not in headers
            and headers.get("sec-fetch-mode", "navigate") == "navigate"
            and headers.get("sec-fetch-dest", "document") == "document")


async def refuse(scope, send, status: int, message: str, code: str) -> None:
    """A one-line answer in the API's error shape; a WebSocket is closed unopened."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"vary", b"Origin")]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware, outermost: Host check, then cross-origin check.

    `api_prefixes`: the paths of the HTTP API, which listed --cors-origins may call
    (their preflights are answered by the API's own CORS); `json_only_prefixes`: API
    paths where a state-changing request must not carry a form's content type."""

    def __init__(self, app, hosts: ServedHosts, cors_origins: tuple[str, ...] = (),
                 api_prefixes: tuple[str, ...] = ("/v1/",), json_only_prefixes: tuple[str, ...] = ("/v1/",),
                 on_refusal: Callable[[str], None] | None = None):
        self.app = app
        self.hosts = hosts
        self.cors_origins = frozenset(o.rstrip("/") for o in cors_origins)
        self.api_prefixes = api_prefixes
        self.json_only_prefixes = json_only_prefixes
        self.on_refusal = on_refusal or (lambda line: None)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self.problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message, code = problem
        self.on_refusal(f"{scope.get('method', 'WEBSOCKET')} {scope['path']}: {message}")
        await refuse(scope, send, status, message, code)

    def problem(self, scope) -> tuple[int, str, str] | None:
        headers = _headers(scope)
        host = headers.get("host")
        if not self.hosts.allows(host):
            return (400, f"this server is not served as {host_name(host)!r}: add the name with --allowed-hosts"
                    if host else "a Host header is required", "unknown_host")
        method = scope.get("method", "GET")
        path = scope["path"]
        is_api = path.startswith(self.api_prefixes)
        origin = foreign_origin(headers, scope.get("scheme", "http"))
        if origin is not None and not (
                # A listed origin may call the API; a preflight is answered (or refused) by the API's CORS.
                (is_api and (origin.rstrip("/") in self.cors_origins or method == "OPTIONS"))
                or (not is_api and scope["type"] == "http" and _is_navigation(method, headers))):
            return 403, f"requests from other web sites ({origin}) are refused", "cross_site_request"
        if (method not in SAFE_METHODS and path.startswith(self.json_only_prefixes)
                and headers.get("content-type", "").split(";")[0].strip().lower() in FORM_TYPES):
            return 415, "the API takes JSON bodies: send 'Content-Type: application/json'", "unsupported_media_type"
        return None
