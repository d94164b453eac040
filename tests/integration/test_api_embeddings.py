"""/v1/embeddings through the official `openai` client against a real Hearth server:
the built-in all-MiniLM-L6-v2 as floats and as base64 (the client's default), batches,
token ids, dimensions, and one-line 4xx answers for what cannot be embedded."""
from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from loaders.gguf_embedder import minilm_gguf
from loaders.minilm import MiniLMEmbedder
from tests.support import running_server
from webui.runtime.embeddings import BUILTIN, MAX_INPUTS

KEY = "test-key-embeddings-0123"
TEXTS = ["The blue door code is 4172.", "What is the code of the blue door?",
         "Bananas are yellow fruit rich in potassium."]


@pytest.fixture(scope="module")
def server():
    with running_server("--n-ctx", "512", "--api-key", KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def encoder():
    """The NumPy encoder: the reference the served vectors are held to."""
    return MiniLMEmbedder()


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_the_built_in_encoder_matches_the_numpy_one(hearth, encoder):
    """The core's built-in (ONNX Runtime where installed: tests/integration/test_minilm_onnx.py)
    against the NumPy encoder, on texts longer than the 256-token cut too."""
    texts = TEXTS + ["lighthouse keeper " * 300]
    builtin = hearth.embeddings.builtin()
    assert cosines(builtin.embed(texts), encoder.embed(texts)).min() > 0.999
    assert builtin.count_tokens(texts) == encoder.count_tokens(texts)


def post(server: str, body: dict) -> httpx.Response:
    return httpx.post(server + "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def test_float_and_base64_are_the_same_vectors(client, encoder):
    floats = client.embeddings.create(model=BUILTIN, input=TEXTS, encoding_format="float")
    # Without encoding_format the client asks for base64 and decodes it itself.
    default = client.embeddings.create(model=BUILTIN, input=TEXTS)
    packed = client.embeddings.create(model=BUILTIN, input=TEXTS, encoding_format="base64")
    a = np.array([d.embedding for d in floats.data], dtype=np.float32)
    b = np.array([d.embedding for d in default.data], dtype=np.float32)
    c = np.array([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in packed.data])
    assert a.shape == (3, 384) and [d.index for d in floats.data] == [0, 1, 2]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert cosines(a, encoder.embed(TEXTS)).min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert floats.model == BUILTIN
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == encoder.count_tokens(TEXTS)


def test_a_single_text_token_ids_and_dimensions(client, encoder):
    one = client.embeddings.create(model=BUILTIN, input=TEXTS[1]).data
    assert len(one) == 1
    ids = encoder._plain.encode(TEXTS[1]).ids  # the same vocabulary as the GGUF's
    by_ids = client.embeddings.create(model=BUILTIN, input=ids).data[0].embedding
    assert cosines(by_ids, one[0].embedding) > 0.9999
    short = np.array(client.embeddings.create(model=BUILTIN, input=TEXTS[1], dimensions=64).data[0].embedding)
    assert short.shape == (64,) and abs(np.linalg.norm(short) - 1) < 1e-5
    full = np.array(one[0].embedding[:64])
    np.testing.assert_allclose(short, full / np.linalg.norm(full), atol=1e-5)


def test_similar_texts_are_near(client):
    data = client.embeddings.create(model=BUILTIN, input=TEXTS).data
    v = np.array([d.embedding for d in data])
    assert v[0] @ v[1] > 0.8 > 0.1 > v[0] @ v[2]


@pytest.mark.parametrize(("body", "status"), [
    ({"model": "no-such-embedder", "input": "hi"}, 404),
    ({"model": "SmolLM2-135M-Instruct-Q4_1 (built-in)", "input": "hi"}, 400),  # a text-generation model
    ({"model": BUILTIN, "input": []}, 400),
    ({"model": BUILTIN, "input": [""]}, 400),
    ({"model": BUILTIN, "input": ["x"] * (MAX_INPUTS + 1)}, 413),
    ({"model": BUILTIN, "input": "hi", "dimensions": 385}, 400),
    ({"model": BUILTIN, "input": [10**9]}, 400),
    ({"model": BUILTIN, "input": "hi", "encoding_format": "int8"}, 422),
])
def test_what_cannot_be_embedded_gets_one_line(server, body, status):
    r = post(server, body)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert message and "\n" not in message


def test_a_loaded_gguf_embedding_model_embeds_and_cannot_chat(server, client, encoder):
    """Last in this module: it replaces the server's model with the built-in's GGUF
    (converted and cached by the core on first use)."""
    path = minilm_gguf()
    if path is None:
        pytest.skip("no GGUF of the built-in encoder here (needs the llama.cpp sources and PyTorch)")
    r = httpx.post(server + "/v1/internal/model/load", json={"model_name": str(path), "loader": "llama.cpp"},
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert r.status_code == 200, r.text
    name = r.json()["model_name"]
    for model in (name, None):  # by its name, and as the default once loaded
        body = {"input": TEXTS, **({"model": model} if model else {})}
        data = post(server, body).json()
        assert data["model"] == name
        assert cosines([d["embedding"] for d in data["data"]], encoder.embed(TEXTS)).min() > 0.999
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
