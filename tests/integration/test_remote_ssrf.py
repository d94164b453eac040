"""The remote loader against crafted engines: a real HTTP server on 127.0.0.1, started
here, answers each path with what a test sets (a stand-in for an internal host or a
hostile engine, which cannot be reached from a test). A load request names any URL,
so: the URL is parsed and only its path replaced, the environment's key goes only to
the engine it was configured for, no reply body is quoted back, and a malformed
reply is one line that keeps the previous model loaded."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loaders.base import GenerationError, LoadError
from loaders.params import GenerationParams
from loaders.remote import API_KEY_ENV, API_KEY_URL_ENV, FALLBACK_CONTEXT, RemoteLoader, RemoteOptions

SECRET = "INTERNAL-SECRET-7f3a"
MODELS = json.dumps({"data": [{"id": "m1"}]}).encode()


class _Handler(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        status, content_type, body = self.server.routes.get(self.path, (404, "application/json", b"{}"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


class FakeEngine:
    """An HTTP server on a loopback port whose replies the test chooses per path."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {"/v1/models": (200, "application/json", MODELS)}
        self.httpd.seen = []
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def route(self, path: str, body: bytes | str | object, status: int = 200, content_type="application/json"):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        self.httpd.routes[path] = (status, content_type, body.encode() if isinstance(body, str) else body)

    @property
    def seen(self) -> list[tuple[str, str, str | None]]:
        return self.httpd.seen

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def engine():
    server = FakeEngine()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def no_environment_key(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.delenv(API_KEY_URL_ENV, raising=False)


def load(url: str, **options):
    return RemoteLoader().load(url, RemoteOptions(**options))


def load_error(url: str, **options) -> str:
    with pytest.raises(LoadError) as caught:
        load(url, **options)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    assert SECRET not in message
    return message


# --- the URL -------------------------------------------------------------------------

@pytest.mark.parametrize("tail, words", [
    ("/admin/secret?", "query"),
    ("/admin/secret?x=/v1/models", "query"),
    ("/v1#fragment", "fragment"),
    ("/admin/../secret", "plain names"),
    ("/admin/%2e%2e/secret", "plain names"),
    ("/ad min", "spaces or control characters"),
])
def test_a_url_that_would_choose_the_requested_path_is_refused_before_any_request(engine, tail, words):
    assert words in load_error(engine.url + tail)
    assert engine.seen == []


@pytest.mark.parametrize("url, words", [
    ("http://user:pw@127.0.0.1:{port}", "user name or password"),
    ("http://127.0.0.1:99999", "not a valid URL"),
    ("file:///etc/passwd", "needs the engine's URL"),
    ("gopher://127.0.0.1:{port}/", "needs the engine's URL"),
])
def test_other_schemes_and_userinfo_are_refused(engine, url, words):
    port = engine.url.rsplit(":", 1)[1]
    assert words in load_error(url.format(port=port))
    assert engine.seen == []


def test_endpoints_are_the_engine_path_replaced(engine):
    model = load(engine.url + "/v1/")
    assert model.model_id == "m1" and model.base == engine.url
    paths = [path for _, path, _ in engine.seen]
    assert paths[0] == "/v1/models"
    assert set(paths) <= {"/v1/models", "/props", "/extras/tokenize", "/tokenize", "/version"}
    model.unload()


# --- the key -------------------------------------------------------------------------

def test_the_environment_key_goes_only_to_the_engine_it_belongs_to(engine, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "env-key")
    load(engine.url).unload()  # no engine named for the key: it is not sent
    monkeypatch.setenv(API_KEY_URL_ENV, "http://127.0.0.1:1")
    load(engine.url).unload()  # the key belongs to another engine
    assert {auth for _, _, auth in engine.seen} == {None}
    engine.seen.clear()
    monkeypatch.setenv(API_KEY_URL_ENV, engine.url + "/v1/")
    load(engine.url).unload()
    assert {auth for _, _, auth in engine.seen} == {"Bearer env-key"}


def test_a_key_given_with_the_load_goes_to_that_engine(engine, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "env-key")
    load(engine.url, remote_api_key="own-key").unload()
    assert {auth for _, _, auth in engine.seen} == {"Bearer own-key"}


def test_a_refused_key_says_how_to_send_the_environment_one(engine, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "env-key")
    engine.route("/v1/models", {"error": {"message": "unauthorized"}}, status=401)
    assert API_KEY_URL_ENV in load_error(engine.url)


# --- replies -------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, content_type", [
    (500, f"Traceback: {SECRET}\nmore", "text/plain"),
    (404, f"<html><title>{SECRET}</title></html>", "text/html"),
    (502, {"detail": SECRET}, "application/json"),
    (400, {"error": SECRET}, "application/json"),
])
def test_an_error_reply_is_not_quoted_back(engine, status, body, content_type):
    engine.route("/v1/models", body, status=status, content_type=content_type)
    message = load_error(engine.url)
    assert message == f"the engine at {engine.url} answered HTTP {status} to /v1/models"


def test_an_openai_error_message_is_kept_short_and_printable(engine):
    engine.route("/v1/models", {"error": {"message": "engine overloaded\x1b[31m, retry" + " x" * 500}}, status=503)
    message = load_error(engine.url)
    assert message.startswith(f"the engine at {engine.url} answered HTTP 503 to /v1/models: engine overloaded")
    assert "\x1b" not in message and message.endswith("...")


@pytest.mark.parametrize("body, words", [
    (f"not json {SECRET}", "gave no model list"),
    ("[" * 100_000 + "]" * 100_000, "gave no model list"),
    ([{"id": "m1"}], "gave no model list"),
    ({"data": "m1"}, "gave no model list"),
    ({"data": [{"id": 5}, {"id": None}, "m1", {"id": ""}]}, "lists no models"),
    ({"data": [{"id": "m1"}], "pad": "x" * (5 << 20)}, "gave no model list"),
])
def test_a_malformed_model_list_is_one_line(engine, body, words):
    engine.route("/v1/models", body)
    assert words in load_error(engine.url)


def test_a_malformed_props_reply_falls_back_to_defaults(engine):
    engine.route("/props", "{" * 50_000)
    model = load(engine.url)
    assert model.context_length == FALLBACK_CONTEXT and model.chat_template is None
    model.unload()
    engine.route("/props", {"chat_template": ["not", "text"], "n_ctx": "4096",
                            "default_generation_settings": [1, 2]})
    model = load(engine.url)
    assert model.context_length == FALLBACK_CONTEXT and model.chat_template is None
    model.unload()
    engine.route("/v1/models", {"data": [{"id": "m1", "max_model_len": 10**12}]})
    engine.route("/props", {"default_generation_settings": {"n_ctx": 2048}, "chat_template": "T"})
    model = load(engine.url)
    assert model.context_length == 2048 and model.chat_template == "T"
    model.unload()


def test_a_wrong_model_name_lists_only_a_few_printable_ids(engine):
    ids = [f"model-{i}\x1b[2J" for i in range(50)]
    engine.route("/v1/models", {"data": [{"id": i} for i in ids]})
    message = load_error(engine.url, remote_model="gpt-17")
    assert "model-0" in message and "and 46 more" in message and "\x1b" not in message


def test_a_failed_remote_load_keeps_the_previous_model(engine, hearth):
    before = hearth.models.current.name
    engine.route("/v1/models", "[" * 100_000)
    with pytest.raises(LoadError) as caught:
        hearth.load_model(engine.url)
    message = str(caught.value)
    assert "gave no model list" in message and f"kept {before} loaded" in message and "\n" not in message
    assert hearth.models.current.name == before


# --- generation ----------------------------------------------------------------------

def reply_error(engine: FakeEngine, status: int, body: bytes | str, content_type="text/event-stream") -> str:
    engine.route("/v1/completions", body, status=status, content_type=content_type)
    model = load(engine.url)
    try:
        with pytest.raises(GenerationError) as caught:
            list(model.generate(model.encode("Hello"), GenerationParams(max_new_tokens=4), threading.Event()))
    finally:
        model.unload()
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300 and SECRET not in message, message
    return message


def test_a_failed_reply_is_not_quoted_back(engine):
    assert reply_error(engine, 500, f"oops {SECRET}", "text/plain") == (
        "the engine answered HTTP 500 to /v1/completions")


def test_a_chunk_that_is_not_json_is_not_quoted_back(engine):
    assert reply_error(engine, 200, f"data: {SECRET}\n\n") == "the engine sent a chunk that is not JSON"


def test_a_streamed_error_keeps_only_its_short_message(engine):
    chunk = json.dumps({"error": {"message": "out of memory", "trace": SECRET}})
    assert reply_error(engine, 200, f"data: {chunk}\n\n") == "the engine failed: out of memory"


def test_an_endless_line_is_an_error_not_a_growing_buffer(engine):
    assert "longer than 1 MiB" in reply_error(engine, 200, "data: " + "x" * (2 << 20))


def test_a_good_stream_still_streams(engine):
    chunks = "".join(f"data: {json.dumps({'choices': [{'text': t, 'finish_reason': None}]})}\n\n"
                     for t in ("Hel", "lo"))
    engine.route("/v1/completions", chunks + "data: [DONE]\n\n", content_type="text/event-stream")
    model = load(engine.url)
    pieces = list(model.generate(model.encode("Hi"), GenerationParams(max_new_tokens=4), threading.Event()))
    model.unload()
    assert pieces == ["Hel", "lo"]
