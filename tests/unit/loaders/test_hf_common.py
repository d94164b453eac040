"""The pure-Python parts of the Hugging-Face-folder loaders: safetensors header checks,
format detection on hand-written folders, incremental detokenizing, and how
GenerationParams become Transformers' generate() arguments. No torch needed."""
from __future__ import annotations

import json
import struct

import pytest

from loaders.hf_common import (
    SafetensorsError,
    context_length,
    model_format,
    read_chat_template,
    read_safetensors_header,
)
from loaders.hf_model import IncrementalDetokenizer, generation_kwargs
from loaders.params import GenerationParams


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_a_valid_safetensors_header_is_read(tmp_path):
    f = tmp_path / "ok.safetensors"
    f.write_bytes(safetensors_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                     "__metadata__": {"format": "pt"}}, bytes(8)))
    assert read_safetensors_header(f)["w"]["shape"] == [2]


@pytest.mark.parametrize("content, words", [
    (b"\x01\x02", "too short"),
    (struct.pack("<Q", 10**9) + b"{}", "corrupt safetensors header"),
    (struct.pack("<Q", 4) + b"{{{{", "not valid JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)), "truncated"),
    (safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 0]}}, bytes(8)), "bad entry"),
])
def test_a_broken_safetensors_file_is_named_in_one_line(tmp_path, content, words):
    f = tmp_path / "model.safetensors"
    f.write_bytes(content)
    with pytest.raises(SafetensorsError) as err:
        read_safetensors_header(f)
    assert words in str(err.value) and "model.safetensors" in str(err.value) and "\n" not in str(err.value)


def test_chat_template_comes_from_the_jinja_file_or_tokenizer_config(tmp_path):
    assert read_chat_template(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}))
    assert read_chat_template(tmp_path) == "D"
    (tmp_path / "chat_template.jinja").write_text("J")
    assert read_chat_template(tmp_path) == "J"


def test_context_length_reads_the_usual_keys():
    assert context_length({"max_position_embeddings": 8192}) == 8192
    assert context_length({"text_config": {"max_position_embeddings": 4096}}) == 4096
    assert context_length({"n_positions": 1024}) == 1024
    assert context_length({}) == 2048


def test_model_format_of_things_that_are_not_models(tmp_path):
    assert model_format(tmp_path) is None
    assert model_format(tmp_path / "missing") is None
    (tmp_path / "config.json").write_text("{not json")
    assert model_format(tmp_path) is None


def test_incremental_detokenizer_holds_back_incomplete_characters():
    """Byte-level tokens (one byte each, as in a byte-level BPE fallback): a character
    is shown once all its bytes have arrived, and every token yields exactly one piece."""
    text = "aé日🙂 z"
    data = text.encode()
    detok = IncrementalDetokenizer(lambda ids: bytes(ids).decode("utf-8", errors="replace"))
    pieces = [detok.push(b) for b in data]
    assert len(pieces) == len(data)
    assert "".join(pieces) + detok.flush() == text
    assert pieces[:2] == ["a", ""] and pieces[2] == "é"


def test_incremental_detokenizer_flushes_a_truncated_character():
    detok = IncrementalDetokenizer(lambda ids: bytes(ids).decode("utf-8", errors="replace"))
    assert detok.push("日".encode()[0]) == ""
    assert detok.flush() == "\ufffd"


def test_greedy_switches_sampling_off_and_overrides_model_defaults():
    kw = generation_kwargs(GenerationParams(temperature=0.0), 10)
    assert kw["do_sample"] is False and kw["max_new_tokens"] == 10
    assert all(kw[k] is None for k in ("temperature", "top_k", "top_p", "min_p", "typical_p"))
    assert kw["repetition_penalty"] == 1.0  # Hearth's own processor does penalties
    assert "min_new_tokens" not in kw


def test_sampling_passes_every_sampler_explicitly():
    kw = generation_kwargs(GenerationParams(temperature=0.7, top_k=0, top_p=0.9, min_p=0.0, typical_p=0.5,
                                            ignore_eos=True), 32)
    assert kw["do_sample"] is True and kw["temperature"] == 0.7
    assert kw["top_k"] == 0 and kw["top_p"] == 0.9 and kw["min_p"] is None and kw["typical_p"] == 0.5
    assert kw["min_new_tokens"] == 32  # ignore_eos: EOS is masked until the end
