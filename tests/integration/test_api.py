"""The OpenAI-compatible API, driven by the official `openai` client against a real
Hearth server (a subprocess) serving the real SmolLM2 model through llama.cpp."""
from __future__ import annotations

import httpx
import openai
import pytest

from loaders.fields import describe
from loaders.params import GenerationParams
from tests.support import running_server
from webui.api.schemas import OPENAI_NAMES

KEY = "test-key-0123456789"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MAX_PROMPT_CHARS = 20_000
MAX_REQUEST_MB = 0.05  # 52 KB: small, so the body limit is cheap to reach


@pytest.fixture(scope="module")
def server():
    with running_server("--n-ctx", "2048", "--api-key", KEY, "--max-prompt-chars", str(MAX_PROMPT_CHARS),
                        "--max-request-mb", str(MAX_REQUEST_MB)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=60)


def raw(server: str, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}", **kwargs.pop("headers", {})}
    return httpx.request(method, server + path, headers=headers, timeout=60, **kwargs)


def test_models_list_names_the_loaded_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["SmolLM2-135M-Instruct-Q4_1 (built-in)"]
    assert client.models.retrieve(models[0].id).id == models[0].id


def test_chat_completion_is_the_reply_core_gives(client, hearth, greedy):
    """Same model, same greedy sampler: the API's answer is exactly core's."""
    expected, stats = hearth.chat(QUESTION, greedy).result()
    reply = client.chat.completions.create(model="anything", messages=QUESTION, temperature=0, seed=42,
                                           max_tokens=greedy.max_new_tokens)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected
    assert choice.finish_reason == ("length" if stats.finish_reason == "length" else "stop")
    assert reply.usage.prompt_tokens == stats.prompt_tokens
    assert reply.usage.completion_tokens == stats.completion_tokens
    assert reply.usage.total_tokens == stats.prompt_tokens + stats.completion_tokens
    assert reply.model == "SmolLM2-135M-Instruct-Q4_1 (built-in)"


def test_completion_and_max_tokens(client):
    reply = client.completions.create(model="x", prompt="Once upon a time", temperature=0, max_tokens=5)
    assert reply.object == "text_completion"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].text.strip()
    echoed = client.completions.create(model="x", prompt="Once upon a time", temperature=0, max_tokens=5,
                                       echo=True)
    assert echoed.choices[0].text == "Once upon a time" + reply.choices[0].text


def test_streaming_chat_matches_the_whole_reply(client):
    whole = client.chat.completions.create(model="x", messages=QUESTION, temperature=0, max_tokens=24)
    chunks = list(client.chat.completions.create(model="x", messages=QUESTION, temperature=0, max_tokens=24,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really streamed
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_streaming_completion(client):
    whole = client.completions.create(model="x", prompt="The sky is", temperature=0, max_tokens=12)
    chunks = list(client.completions.create(model="x", prompt="The sky is", temperature=0, max_tokens=12,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_string_ends_the_reply_before_it(client):
    full = client.completions.create(model="x", prompt="Once upon a time", temperature=0, max_tokens=30)
    text = full.choices[0].text
    words = text.split()
    stop = words[len(words) // 2]
    cut = client.completions.create(model="x", prompt="Once upon a time", temperature=0, max_tokens=30,
                                    stop=[stop, "never appears"])
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model="x", prompt="Once upon a time", temperature=0, max_tokens=30,
                                         stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text[: text.index(stop)]


def test_hearth_samplers_work_through_the_api(client):
    """A sampler beyond OpenAI's set (a GBNF grammar) reaches the model."""
    reply = client.chat.completions.create(model="x", messages=QUESTION, max_tokens=5,
                                           extra_body={"grammar": 'root ::= "yes" | "no"', "top_k": 5})
    assert reply.choices[0].message.content in ("yes", "no")


@pytest.mark.parametrize("kwargs, words", [
    ({"temperature": -1}, ["temperature", "-1"]),
    ({"top_p": 1.5}, ["top_p", "1.5"]),
    ({"n": 2}, ["n"]),
    ({"stop": [""]}, ["stop", "empty"]),
    ({"extra_body": {"temprature": 0.5}}, ["unknown parameter", "temprature"]),
    ({"extra_body": {"mirostat_mode": 7}}, ["mirostat_mode"]),
])
def test_a_bad_parameter_is_a_422_with_one_readable_line(client, kwargs, words):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="x", messages=QUESTION, max_tokens=2, **kwargs)
    error = caught.value.body
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "\n" not in error["message"]
    for word in words:
        assert word in error["message"]


def test_a_missing_or_wrong_key_is_refused(server):
    wrong = openai.OpenAI(base_url=server + "/v1", api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model="x", messages=QUESTION, max_tokens=2)
    assert caught.value.status_code == 401
    assert "API key" in caught.value.body["message"]
    missing = httpx.post(server + "/v1/chat/completions", json={"messages": QUESTION}, timeout=30)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert missing.headers["www-authenticate"] == "Bearer"
    # The docs are public: they hold no secret and say how to send the key.
    assert httpx.get(server + "/docs", timeout=30).status_code == 200


def test_openapi_documents_every_sampler_once(server):
    schema = httpx.get(server + "/openapi.json", timeout=30).json()
    chat = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    for spec in describe(GenerationParams):
        name = {v: k for k, v in OPENAI_NAMES.items()}.get(spec.name, spec.name)
        assert name in chat, name
        assert chat[name]["description"].startswith(spec.help)
    assert "max_new_tokens" not in chat  # spelt the OpenAI way only
    for path in ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/internal/model/info",
                 "/v1/internal/model/load", "/v1/internal/model/unload"):
        assert path in schema["paths"]


def test_size_limits(server, client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="x", prompt="a" * (MAX_PROMPT_CHARS + 1), max_tokens=1)
    assert caught.value.body["code"] == "prompt_too_long"
    assert str(MAX_PROMPT_CHARS) in caught.value.body["message"]
    # Longer than the context (2048 tokens) but under the character limit.
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="x", prompt="hello " * 3000, max_tokens=1)
    assert "context" in caught.value.body["message"]
    big = raw(server, "POST", "/v1/completions", content=b'{"prompt": "' + b"a" * 60_000 + b'"}',
              headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    assert "MiB" in big.json()["error"]["message"]
    # The server is unharmed.
    assert client.completions.create(model="x", prompt="Hi", max_tokens=1).usage.completion_tokens == 1


def test_cors_is_closed_by_default(server):
    preflight = httpx.options(server + "/v1/chat/completions", timeout=30, headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_load_unload_and_info(server, client):
    """Last in this module: it unloads the model the other tests use."""
    info = raw(server, "GET", "/v1/internal/model/info").json()
    assert info["model_name"] == "SmolLM2-135M-Instruct-Q4_1 (built-in)"
    assert info["loader"] == "llama.cpp" and info["context_length"] == 2048
    assert "grammar" in info["supported_params"]
    listed = raw(server, "GET", "/v1/internal/model/list").json()
    assert "SmolLM2-135M-Instruct-Q4_1 (built-in)" in [m["name"] for m in listed["models"]]
    assert {"llama.cpp", "remote"} <= set(listed["loaders"])

    assert raw(server, "POST", "/v1/internal/model/unload").json()["model_name"] is None
    assert client.models.list().data == []
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="x", messages=QUESTION, max_tokens=2)
    assert caught.value.status_code == 503
    assert "no model is loaded" in caught.value.body["message"]

    bad = raw(server, "POST", "/v1/internal/model/load", json={"model_name": "/no/such/model.gguf"})
    assert bad.status_code == 400
    assert "no such file" in bad.json()["error"]["message"]
    loaded = raw(server, "POST", "/v1/internal/model/load", json={"model_name": "", "args": {"n_ctx": 1024}})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["context_length"] == 1024
    assert client.completions.create(model="x", prompt="Hi", max_tokens=2).usage.completion_tokens == 2
    bad_option = raw(server, "POST", "/v1/internal/model/load", json={"model_name": "", "args": {"n_ctx": -5}})
    assert bad_option.status_code == 400
    assert "n_ctx" in bad_option.json()["error"]["message"]
    assert raw(server, "GET", "/v1/internal/model/info").json()["context_length"] == 1024  # kept
