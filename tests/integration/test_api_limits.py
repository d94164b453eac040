"""CORS, the queue limit and the body limit, on the API router mounted in process over
the real core (the session's SmolLM2 model): each needs its own settings, and a
subprocess server per setting would cost seconds each."""
from __future__ import annotations

import dataclasses

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from loaders.params import GenerationParams
from webui.api import install_api
from webui.config import ServerSettings


def api_client(hearth, **settings) -> TestClient:
    app = FastAPI()
    install_api(app, hearth, dataclasses.replace(ServerSettings(), **settings))
    return TestClient(app)


def preflight(client: TestClient, origin: str):
    return client.options("/v1/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})


def test_cors_opens_only_to_the_listed_origins(hearth):
    with api_client(hearth, cors_origins=("https://app.example",)) as client:
        allowed = preflight(client, "https://app.example")
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        other = preflight(client, "https://evil.example")
        assert "access-control-allow-origin" not in other.headers
        read = client.get("/v1/models", headers={"Origin": "https://app.example"})
        assert read.headers["access-control-allow-origin"] == "https://app.example"
    with api_client(hearth) as closed:
        assert "access-control-allow-origin" not in preflight(closed, "https://app.example").headers


def test_a_full_queue_answers_429_and_frees_up(hearth):
    long = GenerationParams(max_new_tokens=1500, ignore_eos=True)
    running = hearth.complete("Once upon a time", long)
    waiting = hearth.complete("Once upon a time", long)
    try:
        with api_client(hearth, max_queue=1) as client:
            # The first job is running, the second waits: one in the queue is the limit.
            events = running.events()
            next(events)
            full = client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1})
            assert full.status_code == 429
            assert full.json()["error"]["code"] == "queue_full"
            assert full.json()["error"]["type"] == "rate_limit_error"
            running.stop()
            waiting.stop()
            list(events)
            waiting.result()
            assert client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1}).status_code == 200
    finally:
        running.stop()
        waiting.stop()


@pytest.mark.parametrize("chunked", [False, True])
def test_the_body_limit_holds_with_or_without_content_length(hearth, chunked):
    body = b'{"prompt": "' + b"a" * 3000 + b'", "max_tokens": 1}'
    with api_client(hearth, max_request_mb=2000 / (1 << 20)) as client:
        content = (body[i:i + 500] for i in range(0, len(body), 500)) if chunked else body
        refused = client.post("/v1/completions", content=content, headers={"Content-Type": "application/json"})
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "request_too_large"
        small = client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1})
        assert small.status_code == 200
