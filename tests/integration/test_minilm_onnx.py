"""The built-in all-MiniLM-L6-v2 on ONNX Runtime (loaders/minilm_onnx.py), the default
encoder of /v1/embeddings and the documents extension: its vectors against
sentence-transformers' (stored in tests/fixtures/embeddings/), padding within a batch,
token ids, the cached graph, and the fallbacks where ONNX Runtime cannot run it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loaders import minilm, minilm_onnx
from loaders.gguf_embedder import LlamaEmbedder
from loaders.minilm import MiniLMEmbedder
from loaders.minilm_onnx import OnnxMiniLM
from webui.runtime.embeddings import Embeddings
from webui.runtime.model_manager import ModelManager

REFERENCE = json.loads((Path(__file__).parent.parent / "fixtures" / "embeddings" /
                        "minilm_sentence_transformers.json").read_text())


@pytest.fixture(scope="module")
def encoder() -> OnnxMiniLM:
    made = OnnxMiniLM.open()
    assert made is not None, "onnxruntime and onnx are in the documents extra: ./test.sh installs them"
    return made


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_vectors_match_sentence_transformers(encoder):
    """All six texts in one padded batch: 9 to 256 tokens (the last one cut at 256)."""
    vectors = encoder.embed(REFERENCE["texts"])
    assert vectors.shape == (6, 384) and vectors.dtype == np.float32
    assert cosines(vectors, REFERENCE["vectors"]).min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_text_gets_the_same_vector_alone_and_padded_in_a_batch(encoder):
    texts = REFERENCE["texts"]
    alone = np.stack([encoder.embed([t])[0] for t in texts])
    assert cosines(alone, encoder.embed(texts)).min() > 0.99999
    ids = encoder.tokenize(texts)
    assert cosines(encoder.embed_ids(ids), alone).min() > 0.99999
    assert encoder.count_tokens(texts) == sum(len(s) for s in ids) and max(len(s) for s in ids) == minilm.MAX_TOKENS


def test_the_service_uses_it_and_the_graph_is_cached_by_the_weights_hash(encoder):
    builtin = Embeddings(ModelManager()).builtin()
    assert isinstance(builtin, OnnxMiniLM)
    model_dir = minilm.bundled_model_dir()
    graph = minilm_onnx.cached_graph(model_dir)
    assert minilm_onnx.weights_digest(model_dir) in graph.name
    built = graph.stat().st_mtime_ns
    assert minilm_onnx.cached_graph(model_dir) == graph and graph.stat().st_mtime_ns == built  # not rebuilt


@pytest.fixture
def broken_graph(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")
    return path


def test_a_broken_graph_is_one_line(broken_graph):
    with pytest.raises(RuntimeError, match="ONNX Runtime could not open broken.onnx") as caught:
        OnnxMiniLM(broken_graph)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("cause", ["onnxruntime missing", "broken cached graph"])
def test_without_onnx_runtime_the_service_falls_back(monkeypatch, broken_graph, cause):
    """onnxruntime cannot be absent and present in one environment: `available` stands
    in for a missing install. The fallback (llama.cpp's GGUF, else NumPy) still matches
    sentence-transformers."""
    if cause == "onnxruntime missing":
        monkeypatch.setattr(minilm_onnx, "available", lambda: False)
    else:
        monkeypatch.setattr(minilm_onnx, "cached_graph", lambda model_dir: broken_graph)
    builtin = Embeddings(ModelManager()).builtin()
    assert isinstance(builtin, LlamaEmbedder | MiniLMEmbedder)
    assert cosines(builtin.embed(REFERENCE["texts"]), REFERENCE["vectors"]).min() > 0.999
