"""What a web page, a rebound host name, a slow client or a login guesser can do to a
real Hearth server (a subprocess, the real SmolLM2 model where a model matters).

Browsers mark their requests (Origin, Sec-Fetch-Site, Referer); these tests send the
headers Chromium sends, and tests/browser/test_cross_site.py does it with Chromium
itself. Programs (curl, the openai client) send none and must keep working."""
from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import gradio as gr
import httpx
import pytest

from tests.support import ROOT, free_port, run_on_own_loop, running_server
from webui.app.flags import build_parser, check_network_safety, settings_from_args
from webui.app.hosts import ServedHosts
from webui.app.login import CLIENT_ADDRESS, LoginThrottle
from webui.config import ServerSettings
from webui.ui import limit_text_inputs

KEY = "web-security-key-0123"
BUILT_IN = "SmolLM2-135M-Instruct-Q4_1 (built-in)"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def server():
    """Loopback defaults, a model loaded: what a browser on this machine can reach."""
    with running_server("--n-ctx", "512") as url:
        yield url


@pytest.fixture(scope="module")
def strict():
    """Small limits, so each is cheap to reach; an API key."""
    with running_server("--no-model", "--api-key", KEY, "--header-timeout", "1", "--body-timeout", "2",
                        "--max-connections-per-client", "4", "--max-request-mb", str(16_000 / (1 << 20)),
                        "--max-upload-mb", str(32_000 / (1 << 20)), "--allowed-hosts", "hearth.lan") as url:
        yield url


@pytest.fixture(scope="module")
def guarded():
    with running_server("--no-model", "--auth", "alice:wonder land") as url:
        yield url


def loaded_model(url: str) -> str | None:
    return httpx.get(url + "/v1/internal/model/info", timeout=30).json()["model_name"]


def other_port(url: str) -> str:
    """A page served on another port of this machine: same site, another origin."""
    return f"http://127.0.0.1:{urlsplit(url).port + 1}"


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def status_line(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


# --- web pages on other origins -----------------------------------------------------

@pytest.mark.parametrize("marks", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},  # a sandboxed frame or a file:// page
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
    {"Referer": "https://evil.example/attack.html"},  # an older browser: no Origin, no Sec-Fetch
], ids=["origin", "null-origin", "sec-fetch", "referer"])
def test_a_cross_site_form_cannot_unload_the_model(server, marks):
    """An HTML form needs no CORS preflight: the server itself must refuse it."""
    refused = httpx.post(server + "/v1/internal/model/unload", headers={**FORM, **marks}, timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "cross_site_request"
    assert "\n" not in refused.json()["error"]["message"]
    assert loaded_model(server) == BUILT_IN


def test_a_page_on_another_local_port_cannot_call_the_api(server):
    page = other_port(server)
    preflight = httpx.options(server + "/v1/internal/model/load", timeout=30, headers={
        "Origin": page, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 403  # answered by the API itself, not by the UI's CORS
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.json()["error"]["code"] == "cors_origin_not_allowed"
    # Even if the browser sent it anyway: refused, and nothing readable.
    sent = httpx.post(server + "/v1/internal/model/load", json={"model_name": "/no/such.gguf"}, timeout=30,
                      headers={"Origin": page, "Sec-Fetch-Site": "same-site"})
    assert sent.status_code == 403 and "access-control-allow-origin" not in sent.headers
    assert loaded_model(server) == BUILT_IN


def test_a_page_on_another_origin_cannot_drive_the_ui(server):
    """The UI's own API (Gradio's queue, config, uploads) answers its own page only."""
    page = other_port(server)
    for method, path in (("OPTIONS", "/gradio_api/queue/join"), ("POST", "/gradio_api/queue/join"),
                         ("GET", "/config"), ("GET", "/gradio_api/info"), ("POST", "/gradio_api/upload")):
        headers = {"Origin": page, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}
        if method == "OPTIONS":
            headers["Access-Control-Request-Method"] = "POST"
        answer = httpx.request(method, server + path, headers=headers, timeout=30,
                               json={"fn_index": 0, "data": [], "session_hash": "x"} if method == "POST" else None)
        assert answer.status_code == 403, (method, path)
        assert "access-control-allow-origin" not in answer.headers, (method, path)
    # An image or script tag elsewhere sends no Origin, but Sec-Fetch-Site says where it comes from.
    embedded = httpx.get(server + "/config", timeout=30, headers={
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"})
    assert embedded.status_code == 403


def test_the_ui_and_programs_still_work(server):
    own = server
    page = httpx.get(own + "/config", timeout=30, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert page.status_code == 200 and page.json()["components"]
    # A link followed from another site opens the UI (a navigation reads nothing back).
    linked = httpx.get(own + "/", timeout=30, headers={
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
        "Referer": "https://elsewhere.example/"})
    assert linked.status_code == 200
    # ...but not inside another site's frame, where clicks could be tricked into it.
    framed = httpx.get(own + "/", timeout=30, headers={
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"})
    assert framed.status_code == 403
    # Programs send no browser marks: curl-style requests and JSON from the page itself pass.
    reply = httpx.post(own + "/v1/completions", json={"prompt": "Hi", "max_tokens": 1}, timeout=60)
    assert reply.status_code == 200
    from_ui = httpx.post(own + "/v1/completions", json={"prompt": "Hi", "max_tokens": 1}, timeout=60,
                         headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert from_ui.status_code == 200


def test_the_api_takes_no_form_bodies(server):
    """What a form can send is refused even from the page's own origin: a state change
    always needs a JSON request, which a browser sends cross-origin only after a preflight."""
    refused = httpx.post(server + "/v1/internal/model/unload", headers=FORM, content=b"", timeout=30)
    assert refused.status_code == 415
    assert refused.json()["error"]["code"] == "unsupported_media_type"
    text_plain = httpx.post(server + "/v1/internal/model/load", content=b'{"model_name": ""}', timeout=30,
                            headers={"Content-Type": "text/plain"})
    assert text_plain.status_code == 415
    assert loaded_model(server) == BUILT_IN


def test_listed_cors_origins_reach_the_api_and_never_the_ui():
    listed = "http://127.0.0.1:9"
    with running_server("--no-model", "--cors-origins", listed) as url:
        api = httpx.get(url + "/v1/models", headers={"Origin": listed}, timeout=30)
        assert api.status_code == 200 and api.headers["access-control-allow-origin"] == listed
        preflight = httpx.options(url + "/v1/chat/completions", timeout=30, headers={
            "Origin": listed, "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == listed
        ui = httpx.get(url + "/config", headers={"Origin": listed}, timeout=30)
        assert ui.status_code == 403 and "access-control-allow-origin" not in ui.headers


# --- the Host header (DNS rebinding) ---------------------------------------------------

def test_only_the_names_the_server_is_served_as_are_answered(server, strict):
    port = urlsplit(server).port
    rebound = httpx.get(server + "/healthz", headers={"Host": f"attacker.example:{port}"}, timeout=30)
    assert rebound.status_code == 400
    assert rebound.json()["error"]["code"] == "unknown_host"
    assert "--allowed-hosts" in rebound.json()["error"]["message"]
    assert httpx.get(server + "/v1/models", headers={"Host": f"attacker.example:{port}"}, timeout=30).status_code == 400
    for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        assert httpx.get(server + "/healthz", headers={"Host": name}, timeout=30).status_code == 200, name
    # A name the user added.
    strict_port = urlsplit(strict).port
    assert httpx.get(strict + "/healthz", headers={"Host": f"hearth.lan:{strict_port}"}, timeout=30).status_code == 200
    assert httpx.get(strict + "/healthz", headers={"Host": f"other.lan:{strict_port}"}, timeout=30).status_code == 400


def test_served_names_follow_the_settings(monkeypatch):
    monkeypatch.setattr("webui.app.hosts.machine_names", lambda: {"box", "box.local"})
    loopback = ServedHosts.for_settings(ServerSettings())
    assert loopback.allows("127.0.0.1:7860") and loopback.allows("[::1]:7860") and loopback.allows("localhost")
    assert not loopback.allows("box:7860") and not loopback.allows("192.168.1.5:7860")
    assert not loopback.allows("") and not loopback.allows(None)
    lan = ServedHosts.for_settings(dataclasses.replace(ServerSettings(), host="0.0.0.0", listen=True))
    assert lan.allows("box:7860") and lan.allows("BOX.local.:7860") and lan.allows("192.168.1.5:7860")
    assert lan.allows("[fe80::1]:7860") and not lan.allows("attacker.example:7860")
    bound = ServedHosts.for_settings(dataclasses.replace(ServerSettings(), host="hearth.internal", listen=True))
    assert bound.allows("hearth.internal:80")
    anything = ServedHosts.for_settings(dataclasses.replace(ServerSettings(), allowed_hosts=("*",)))
    assert anything.allows("whatever.example")


# --- slow and greedy clients -------------------------------------------------------------

def test_the_key_is_checked_before_the_body_is_read(strict):
    """A client without the key gets 401 at once, though it has sent none of the 8 MB it announced."""
    with connect(strict) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 8000000\r\n\r\n")
        sock.settimeout(5)
        assert status_line(sock).startswith("HTTP/1.1 401")
    with connect(strict) as sock:  # chunked, no length announced: the same
        sock.sendall(b"POST /extensions/documents/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Transfer-Encoding: chunked\r\nX-API-Key: wrong\r\n\r\n10\r\n{\"query\": \"aaaaa\r\n")
        sock.settimeout(5)
        assert status_line(sock).startswith("HTTP/1.1 401")


def test_a_body_that_dribbles_in_is_cut_off(strict):
    with connect(strict) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"prompt\": ")
        sock.settimeout(10)
        start = time.monotonic()
        assert status_line(sock).startswith("HTTP/1.1 408")
        assert time.monotonic() - start < 6  # --body-timeout 2


def test_headers_that_never_finish_are_cut_off(strict):
    with connect(strict) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        start = time.monotonic()
        assert closed_within(sock, 8)
        assert time.monotonic() - start < 6  # --header-timeout 1


def test_one_address_holds_only_so_many_connections(strict):
    held = [connect(strict) for _ in range(4)]  # idle: the server closes them after --header-timeout (1 s)
    try:
        with connect(strict) as extra:
            extra.settimeout(5)
            answer = extra.recv(4096)
            assert answer.startswith(b"HTTP/1.1 503") and b"--max-connections-per-client" in answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(strict + "/healthz", timeout=30).status_code == 200


@pytest.mark.parametrize("path, limit_flag", [
    ("/gradio_api/upload", "--max-upload-mb"),
    ("/gradio_api/queue/join", "--max-request-mb"),
    ("/extensions/documents/search", "--max-request-mb"),
])
@pytest.mark.parametrize("chunked", [False, True])
def test_every_body_has_a_limit(strict, path, limit_flag, chunked):
    # A real multipart upload, so the upload route reads on rather than refusing the form.
    body = (b'--edge\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n\r\n'
            + b"x" * 40_000 + b"\r\n--edge--\r\n")  # over both limits (16 kB, 32 kB)
    kind = "multipart/form-data; boundary=edge" if "upload" in path else "application/json"
    content = (body[i:i + 4000] for i in range(0, len(body), 4000)) if chunked else body
    answer = httpx.post(strict + path, content=content, timeout=30, headers={
        "Content-Type": kind, "Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 413, answer.text
    assert limit_flag in answer.json()["error"]["message"]


def test_an_upload_under_its_own_limit_is_not_held_to_the_request_limit(strict):
    """20 kB: over --max-request-mb (16 kB), under --max-upload-mb (32 kB)."""
    answer = httpx.post(strict + "/gradio_api/upload", files={"files": ("card.txt", b"y" * 20_000)}, timeout=30)
    assert answer.status_code == 200, answer.text


# --- the UI login ----------------------------------------------------------------------

def test_ui_bodies_need_a_login_before_they_are_read(guarded):
    with connect(guarded) as sock:
        sock.sendall(b"POST /gradio_api/queue/join HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000000\r\n\r\n")
        sock.settimeout(5)
        assert status_line(sock).startswith("HTTP/1.1 401")


def test_failed_logins_are_slowed_without_stopping_the_server(guarded):
    def log_in(password: str) -> tuple[int, float]:
        start = time.monotonic()
        status = httpx.post(guarded + "/login", data={"username": "alice", "password": password}, timeout=60).status_code
        return status, time.monotonic() - start

    for _ in range(LoginThrottle.FREE_FAILURES):  # a person mistyping is answered at once
        status, took = log_in("guess")
        assert status == 400 and took < 1
    answers: list[tuple[int, float]] = []
    slow = threading.Thread(target=lambda: answers.append(log_in("guess")))
    slow.start()
    time.sleep(0.3)
    start = time.monotonic()
    assert httpx.get(guarded + "/healthz", timeout=30).status_code == 200
    assert time.monotonic() - start < 0.5  # the event loop is not blocked by the waiting login
    slow.join()
    assert answers[0][0] == 400 and answers[0][1] >= 0.9
    status, took = log_in("guess")
    assert status == 400 and took >= 1.9
    ok = httpx.post(guarded + "/login", data={"username": "alice", "password": "wonder land"}, timeout=60)
    assert ok.status_code == 200 and ok.json() == {"success": True}
    # The session it opened may send the UI's requests (bodies included).
    joined = httpx.post(guarded + "/gradio_api/queue/join", cookies=ok.cookies, timeout=30,
                        json={"fn_index": 0, "data": [], "session_hash": "s"})
    assert joined.status_code != 401
    assert httpx.post(guarded + "/gradio_api/queue/join", timeout=30,
                      json={"fn_index": 0, "data": [], "session_hash": "s"}).status_code == 401


def test_the_throttle_counts_per_address_and_per_user():
    """Guessing in parallel gains nothing: attempts for one name take turns."""
    clock = [1000.0]
    throttle = LoginThrottle("alice", "right", clock=lambda: clock[0])
    throttle.FREE_FAILURES, throttle.MAX_DELAY = 1, 0.2

    async def attempt(address: str, user: str, password: str) -> bool:
        CLIENT_ADDRESS.set(address)
        return await throttle.check(user, password)

    async def scenario():
        assert not await attempt("10.0.0.1", "alice", "x")
        assert throttle.failures(("address", "10.0.0.1")) == 1 and throttle.failures(("user", "alice")) == 1
        # Three addresses guess alice's password at once: they wait for each other.
        start = time.monotonic()
        results = await asyncio.gather(*(attempt(f"10.0.1.{i}", "alice", "x") for i in range(3)))
        assert results == [False] * 3
        assert time.monotonic() - start >= 3 * 0.2 - 0.05  # in parallel it would be 0.2
        assert throttle.failures(("user", "alice")) == 4 and throttle.failures(("address", "10.0.1.0")) == 1
        # Another name from a fresh address is not slowed by alice's failures.
        start = time.monotonic()
        assert not await attempt("10.0.2.1", "bob", "x")
        assert time.monotonic() - start < 0.1
        assert await attempt("10.0.1.0", "alice", "right")
        assert throttle.failures(("user", "alice")) == 0
        clock[0] += LoginThrottle.FORGET_AFTER + 1
        assert throttle.failures(("user", "bob")) == 0  # forgotten after a quiet while

    run_on_own_loop(scenario())
    assert not throttle._locks  # no lock outlives its attempts


@pytest.mark.parametrize("auth", [":", "me:", ":pw", " :pw"])
def test_an_empty_user_or_password_is_refused(auth):
    for extra in ([], ["--listen", "--api-key", "k3y"]):
        done = subprocess.run([sys.executable, "-m", "webui", "--no-model", "--port", str(free_port()),
                               "--auth", auth, *extra], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.strip() == "hearth: --auth must be USER:PASSWORD, with neither part empty"


def test_listen_honours_an_explicit_host():
    given = settings_from_args(build_parser().parse_args(
        ["--listen", "--host", "192.168.1.20", "--auth", "me:pw", "--api-key", "k"]), environ={})
    assert given.host == "192.168.1.20" and given.listen and check_network_safety(given) is None
    default = settings_from_args(build_parser().parse_args(["--listen", "--auth", "me:pw", "--api-key", "k"]),
                                 environ={})
    assert default.host == "0.0.0.0"


# --- text boxes ------------------------------------------------------------------------

def test_text_boxes_take_at_most_the_limit():
    with gr.Blocks() as demo:
        box = gr.Textbox(label="Message")
        code = gr.Code(label="Template")
        roomy = gr.Textbox(max_length=5)
    limit_text_inputs(demo, 10)
    assert box.max_length == 10 and roomy.max_length == 5  # the browser stops typing there
    assert box.preprocess("a" * 10) == "a" * 10
    for component in (box, code):
        with pytest.raises(gr.Error, match="11 characters is more than the 10 this server takes"):
            component.preprocess("a" * 11)


def test_the_served_ui_limits_its_text_boxes():
    with running_server("--no-model", "--max-prompt-chars", "1234") as url:
        config = httpx.get(url + "/config", timeout=30).json()
    chat_input = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "chat-input")
    assert chat_input["props"]["max_length"] == 1234
