"""Fuzz every API operation from its own OpenAPI schema (schemathesis): whatever a
client sends, Hearth answers with a status it documents, never a 500, and stays up.

Bounded to run in about a minute on 2 cores: few examples per operation, prompts
over 300 characters refused by the server's own limit (which the fuzz so exercises),
and generation capped at a few tokens (the schema allows up to the context's worth)."""
from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.support import running_server

KEY = "fuzz-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_TOKENS = 4


@pytest.fixture(scope="module")
def fuzz_server():
    with running_server("--n-ctx", "1024", "--api-key", KEY, "--max-prompt-chars", "300") as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server + "/openapi.json").include(path_regex="^/v1/")


def bounded(case) -> None:
    """Keep each case cheap: few tokens, and loads only of the built-in model with
    its default options (a fuzzed n_threads=200 would only test the machine)."""
    body = case.body if isinstance(case.body, dict) else None
    if body is None:
        return
    if case.path == "/v1/messages" and (not isinstance(body.get("max_tokens"), int) or body["max_tokens"] > MAX_TOKENS):
        body["max_tokens"] = MAX_TOKENS
    if case.path.endswith("/completions"):
        for name in ("max_tokens", "max_completion_tokens"):
            if not isinstance(body.get(name), int) or body[name] > MAX_TOKENS:  # None means 512
                body[name] = MAX_TOKENS
    if case.path == "/v1/internal/model/load":
        body.pop("args", None)
        if isinstance(body.get("model_name"), str) and not body["model_name"].strip("\x00"):
            body["model_name"] = ""


def check(case) -> None:
    bounded(case)
    response = case.call(headers=AUTH, timeout=60)
    assert response.status_code < 500 or response.status_code == 503, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}")
    if response.status_code >= 400:
        error = response.json()["error"]
        # Anthropic's route answers in Anthropic's shape, once past the API key gate.
        anthropic_shape = case.path == "/v1/messages" and response.status_code != 401
        assert set(error) == ({"type", "message"} if anthropic_shape else {"message", "type", "param", "code"})
        assert error["message"] and "\n" not in error["message"]
    case.validate_response(response, checks=[status_code_conformance])


def test_no_request_makes_a_server_error(api_schema):
    # Hypothesis driven by hand: schemathesis' pytest plugin does not run under pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        run = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                       suppress_health_check=list(HealthCheck))(given(case=operation.as_strategy())(check))
        run()


def test_still_serving_after_the_fuzz(fuzz_server):
    httpx.post(fuzz_server + "/v1/internal/model/load", json={"model_name": ""}, headers=AUTH, timeout=60)
    reply = httpx.post(fuzz_server + "/v1/completions", headers=AUTH, timeout=60,
                       json={"prompt": "Hello", "max_tokens": 2, "temperature": 0})
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 2
