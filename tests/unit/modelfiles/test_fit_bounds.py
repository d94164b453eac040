"""Will-it-fit against crafted headers and config.json files: every number is checked
against what a real model could have before any arithmetic uses it, nothing is
allocated per claimed layer, and one bad file in models/ is listed with its problem
while the others list as before."""
from __future__ import annotations

import io
import json
import struct
import tracemalloc

import pytest

from loaders.gguf import read_header
from tests.hub_standin import SMOLLM_CONFIG
from tests.unit.loaders.test_gguf_bounds import ARRAY, STRING, UINT32, gguf, gguf_string, nested_arrays, pair, tensor
from webui.modelfiles import fit
from webui.modelfiles.fit import ShapeError
from webui.modelfiles.local import estimate_for, model_entries, scan, shape_of


def llama_header(block_count: int = 30, **extra: int) -> bytes:
    """A small GGUF header with SmolLM2's shape (and whatever `extra` changes) and one
    tensor in layer 0."""
    values = {"block_count": block_count, "context_length": 8192, "embedding_length": 576,
              "attention.head_count": 9, "attention.head_count_kv": 3, **extra}
    pairs = [pair("general.architecture", STRING, gguf_string("llama"))]
    pairs += [pair(f"llama.{k}", UINT32, struct.pack("<I", v)) for k, v in values.items()]
    return gguf(pairs, [tensor("blk.0.attn_q.weight", (576, 576))])


def test_a_301_byte_header_claiming_2_to_the_26_layers_allocates_nothing():
    data = llama_header(block_count=1 << 26)
    assert len(data) < 400
    header = read_header(io.BytesIO(data))
    tracemalloc.start()
    try:
        with pytest.raises(ShapeError, match="block_count = 67,108,864") as e:
            fit.shape_from_gguf(header, len(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20 and "\n" not in str(e.value)


def test_layers_at_the_limit_build_no_per_layer_list():
    data = llama_header(block_count=fit.MAX_LAYERS)
    tracemalloc.start()
    try:
        shape = fit.shape_from_gguf(read_header(io.BytesIO(data)), len(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shape.n_layers == fit.MAX_LAYERS and shape.layer_bytes == ()  # one layer has tensors, not all
    assert peak < 1 << 20
    assert fit.estimate(shape, 2048).total_bytes > 0


@pytest.mark.parametrize("key, value", [
    ("context_length", fit.MAX_CONTEXT + 1), ("embedding_length", fit.MAX_WIDTH + 1),
    ("attention.head_count", fit.MAX_HEADS + 1), ("attention.head_count_kv", fit.MAX_HEADS + 1),
    ("attention.key_length", fit.MAX_HEAD_DIM + 1), ("feed_forward_length", fit.MAX_WIDTH + 1),
    ("vocab_size", fit.MAX_VOCAB + 1),
])
def test_each_implausible_header_value_is_one_line(key, value):
    data = llama_header(**{key: value})
    with pytest.raises(ShapeError, match=f"{key} = {value:,}") as e:
        fit.shape_from_gguf(read_header(io.BytesIO(data)), len(data))
    assert "\n" not in str(e.value)


def test_a_tokens_value_of_the_wrong_type_gives_no_vocabulary():
    data = gguf([pair("tokenizer.ggml.tokens", STRING, gguf_string("not a list"))])
    assert fit.shape_from_gguf(read_header(io.BytesIO(data)), len(data)).n_vocab is None


@pytest.mark.parametrize("change, match", [
    ({"num_hidden_layers": 1 << 26}, "num_hidden_layers"),
    ({"num_hidden_layers": -1}, "num_hidden_layers"),
    ({"hidden_size": 1 << 40}, "hidden_size"),
    ({"num_key_value_heads": 10 ** 12}, "num_key_value_heads"),
    ({"max_position_embeddings": 1 << 40}, "max_position_embeddings"),
    ({"text_config": [1, 2]}, "text_config"),
])
def test_an_implausible_config_is_one_line(change, match):
    with pytest.raises(ShapeError, match=match) as e:
        fit.shape_from_config({**SMOLLM_CONFIG, **change}, 1)
    assert "\n" not in str(e.value)


def test_config_values_of_the_wrong_type_are_unknown():
    # "30" * 3 * 64 would be string repetition, not arithmetic.
    shape = fit.shape_from_config({**SMOLLM_CONFIG, "num_hidden_layers": "30", "head_dim": [64],
                                   "intermediate_size": [1536, 1536], "vocab_size": True}, 1)
    assert (shape.n_layers, shape.kv_bytes_per_token, shape.n_ff, shape.n_vocab) == (None, None, None, None)


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "good.gguf").write_bytes(llama_header())
    (models / "many-layers.gguf").write_bytes(llama_header(block_count=1 << 26))
    (models / "deep.gguf").write_bytes(gguf([pair("deep", ARRAY, nested_arrays(100_000))]))
    deep_config = models / "org_deep-config"
    deep_config.mkdir()
    (deep_config / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    (deep_config / "model.safetensors").write_bytes(b"")
    huge_config = models / "org_huge-config"
    huge_config.mkdir()
    (huge_config / "config.json").write_text(json.dumps({**SMOLLM_CONFIG, "num_hidden_layers": 1 << 26}))
    (huge_config / "model.safetensors").write_bytes(b"")
    (models / "org_bad-record").mkdir()
    (models / "org_bad-record" / ".hearth-download.json").write_text('{"repo_id": [1], "files": {}}')
    (models / "org_bad-record" / "m.gguf").write_bytes(llama_header())
    (models / "dangling.gguf").symlink_to(tmp_path / "gone.gguf")

    labels = [label for label, _ in model_entries(models)]
    assert labels == ["dangling.gguf", "deep.gguf", "good.gguf", "many-layers.gguf", "org_bad-record/m.gguf",
                      "org_deep-config", "org_huge-config"]
    listed = {m.label: m for m in scan(models)}
    assert sorted(listed) == sorted(labels)
    assert listed["good.gguf"].problem == "" and listed["org_bad-record/m.gguf"].problem == ""
    assert "nested more than" in listed["deep.gguf"].problem
    assert "block_count = 67,108,864" in listed["many-layers.gguf"].problem
    assert listed["dangling.gguf"].size_bytes == 0  # listed, whatever reading it says
    assert all("\n" not in m.problem for m in listed.values())
    assert estimate_for(models / "good.gguf", 2048) is not None
    for bad in ("deep.gguf", "many-layers.gguf", "org_deep-config", "org_huge-config"):
        assert shape_of(models / bad) is None and estimate_for(models / bad, 2048) is None
