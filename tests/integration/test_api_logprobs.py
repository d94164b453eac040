"""logprobs and top_logprobs on /v1/chat/completions and /v1/completions, and echo's
prompt logprobs, through the official `openai` client against a real Hearth server
with the real SmolLM2 model; the numbers are checked against raw llama-cpp-python's
logits for the same tokens."""
from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from tests.support import running_server

KEY = "test-key-logprobs-0123"
PROMPT = "The capital of France is"
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def server():
    with running_server("--n-ctx", "2048", "--api-key", KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def raw_llm(default_model):
    """The raw library with logits kept for every position: the reference numbers."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(default_model), n_ctx=2048, logits_all=True, verbose=False)
    yield llm
    llm.close()


def raw_logprobs(llm, ids: list[int], generated: list[int] = ()) -> np.ndarray:
    """log p(ids[i] | ids[:i]) for i >= 1, from the raw library's logits: `ids` in one
    batch, then each `generated` token alone, as a generation loop evaluates them
    (llama.cpp's CPU kernels give slightly different floats for a token inside a
    batch, up to 0.07 nats here, so the reference evaluates the way generation does)."""
    llm.reset()
    llm.eval(ids)
    for token in generated:
        llm.eval([token])
    ids = list(ids) + list(generated)
    scores = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    logp = scores - scores.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return np.array([logp[i - 1, ids[i]] for i in range(1, len(ids))])


def test_completion_logprobs_match_the_raw_library(client, raw_llm):
    reply = client.completions.create(model="x", prompt=PROMPT, temperature=0, max_tokens=6, logprobs=3)
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert "".join(lp.tokens) == reply.choices[0].text
    assert lp.text_offset[0] == len(PROMPT)
    prompt_ids = raw_llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
    # Greedy: each token is its position's likeliest, so it heads its own top list.
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) == 3
        assert max(top.values()) == pytest.approx(logprob, abs=1e-6)
        assert top[token] == pytest.approx(logprob, abs=1e-6)
    reply_ids = raw_llm.tokenize(reply.choices[0].text.encode(), add_bos=False, special=True)
    expected = raw_logprobs(raw_llm, prompt_ids, reply_ids)[len(prompt_ids) - 1:]
    assert np.allclose(lp.token_logprobs, expected, atol=TOLERANCE)


def test_echo_scores_the_prompt_without_generating(client, raw_llm):
    """What evaluation harnesses send for log-likelihood tasks."""
    text = PROMPT + " Paris"
    reply = client.completions.create(model="x", prompt=text, max_tokens=0, echo=True, logprobs=0)
    choice = reply.choices[0]
    assert choice.text == text
    lp = choice.logprobs
    ids = raw_llm.tokenize(text.encode(), add_bos=True, special=True)
    assert len(lp.tokens) == len(ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert np.allclose(lp.token_logprobs[1:], raw_logprobs(raw_llm, ids), atol=TOLERANCE)
    assert lp.text_offset[0] == 0 and "".join(lp.tokens).endswith(" Paris")
    assert reply.usage.completion_tokens == 0


def test_echo_with_a_reply_puts_the_prompt_first(client):
    reply = client.completions.create(model="x", prompt=PROMPT, temperature=0, max_tokens=3, echo=True, logprobs=1)
    lp = reply.choices[0].logprobs
    assert reply.choices[0].text.startswith(PROMPT)
    assert len(lp.tokens) == reply.usage.prompt_tokens + 3
    assert lp.token_logprobs[0] is None and all(v is not None for v in lp.token_logprobs[1:])


def test_chat_logprobs_and_their_stream(client):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    reply = client.chat.completions.create(model="x", messages=question, temperature=0, max_tokens=5,
                                           logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert len(content) == 5
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for t in content:
        assert bytes(t.bytes).decode() == t.token
        assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True)
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == pytest.approx(t.logprob)
    streamed = [c.choices[0].logprobs.content for c in client.chat.completions.create(
        model="x", messages=question, temperature=0, max_tokens=5, logprobs=True, top_logprobs=2, stream=True)
        if c.choices and c.choices[0].logprobs]
    tokens = [t for chunk in streamed for t in chunk]
    assert [(t.token, round(t.logprob, 4)) for t in tokens] == [(t.token, round(t.logprob, 4)) for t in content]


def test_without_logprobs_there_are_none(client):
    reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}],
                                           temperature=0, max_tokens=2)
    assert reply.choices[0].logprobs is None


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": "Hi"}], "logprobs": True, "top_logprobs": 21},
    {"messages": [{"role": "user", "content": "Hi"}], "logprobs": True, "top_logprobs": -1},
    {"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 3},
    {"prompt": "Hi", "logprobs": 21},
    {"prompt": "Hi", "max_tokens": 0},
])
def test_bad_logprobs_requests_get_one_line_4xx(server, body):
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    r = httpx.post(server + path, json={"max_tokens": 2, **body} if "max_tokens" not in body else body,
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    message = r.json()["error"]["message"]
    assert message and "\n" not in message


def test_speculative_decoding_refuses_logprobs_in_one_line(server, client):
    """Last in this module: it reloads the server's model with prompt lookup on, whose
    drafted tokens are checked in batches (no per-token logits to report)."""
    r = httpx.post(server + "/v1/internal/model/load", json={"args": {"n_ctx": 2048, "prompt_lookup_ngram": 2}},
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert r.status_code == 200, r.text
    with pytest.raises(openai.BadRequestError, match="logprobs are not available with speculative decoding"):
        client.completions.create(model="x", prompt=PROMPT, max_tokens=3, logprobs=1)
    assert client.completions.create(model="x", prompt=PROMPT, max_tokens=3).choices[0].text
