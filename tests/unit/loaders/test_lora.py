"""LoRA entries (PATH[:SCALE]), telling GGUF LoRA files from PEFT folders, and the
header checks that refuse a LoRA made for another model before llama.cpp reads it.
The GGUF files are written with the gguf package's own writer; the model they are
checked against is the built-in SmolLM2 (llama architecture, 576 wide)."""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from loaders.gguf import check_complete
from loaders.gptq import GPTQOptions
from loaders.llamacpp import LlamaCppOptions
from loaders.lora import (
    MAX_ADAPTERS,
    AdapterError,
    AdapterSpec,
    gguf_adapter_file,
    parse_entries,
    parse_entry,
    peft_adapter_folder,
    takes_adapters,
)
from loaders.lora_llamacpp import check_gguf_lora
from loaders.transformers import TransformersOptions

RANK = 4


@pytest.fixture(scope="module")
def model_header(default_model):
    return check_complete(default_model)


def write_lora(path: Path, *, arch: str = "llama", general_type: str = "adapter",
               tensors: dict[str, tuple[int, int]] | None = None) -> Path:
    """A GGUF LoRA: for each base tensor name, (inputs, outputs) of its A and B pair."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_type(general_type)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 8.0)
    for name, (inputs, outputs) in (tensors or {"blk.0.attn_q.weight": (576, 576)}).items():
        # numpy's shape is ggml's ne reversed: A is ne (inputs, rank), B ne (rank, outputs)
        writer.add_tensor(f"{name}.lora_a", np.zeros((RANK, inputs), dtype=np.float32))
        writer.add_tensor(f"{name}.lora_b", np.zeros((outputs, RANK), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def peft_folder(path: Path) -> Path:
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": RANK}))
    (path / "adapter_model.safetensors").write_bytes(b"")
    return path


@pytest.mark.parametrize(("entry", "path", "scale"), [
    ("style.gguf", "style.gguf", 1.0),
    ("style.gguf:0.5", "style.gguf", 0.5),
    ("style.gguf:-1", "style.gguf", -1.0),
    (" tone:0 ", "tone", 0.0),
    ("C:\\loras\\style.gguf", "C:\\loras\\style.gguf", 1.0),  # a drive's colon is part of the path
    ("C:\\loras\\style.gguf:2", "C:\\loras\\style.gguf", 2.0),
    ("loras/v1:final", "loras/v1:final", 1.0),
])
def test_an_entry_is_a_path_and_an_optional_scale(entry, path, scale):
    assert parse_entry(entry) == AdapterSpec(Path(path), scale)


def test_an_entry_round_trips_through_the_option_value():
    spec = AdapterSpec(Path("/m/style.gguf"), 0.25)
    assert parse_entry(spec.entry) == spec


@pytest.mark.parametrize(("entries", "words"), [
    (["style.gguf:9"], "scale of style.gguf must be from -4 to 4"),
    (["style.gguf:-4.5"], "must be from -4 to 4"),
    (["style.gguf:nan"], "must be from -4 to 4"),
    (["style.gguf:inf"], "must be from -4 to 4"),
    (["  "], "empty"),
    (["a.gguf", "b.gguf", "a.gguf:0.5"], "a.gguf is named twice"),
    ([f"{i}.gguf" for i in range(MAX_ADAPTERS + 1)], f"at most {MAX_ADAPTERS}"),
    (["x" * 5000], "at most 4,096"),
])
def test_bad_entries_are_one_line(entries, words):
    with pytest.raises(AdapterError, match=words) as caught:
        parse_entries(entries)
    assert "\n" not in str(caught.value)


def test_the_loaders_that_take_adapters_declare_the_option():
    assert takes_adapters(LlamaCppOptions()) and takes_adapters(TransformersOptions())
    assert not takes_adapters(GPTQOptions())
    assert LlamaCppOptions(lora=("a.gguf:0.5",)).lora == ("a.gguf:0.5",)


def test_each_loader_names_the_other_for_the_other_kind_of_adapter(tmp_path):
    peft = peft_folder(tmp_path / "tone")
    lora = write_lora(tmp_path / "style.gguf")
    assert gguf_adapter_file(lora) == lora
    assert peft_adapter_folder(peft) == peft
    assert peft_adapter_folder(peft / "adapter_config.json") == peft
    with pytest.raises(AdapterError, match="tone is a PEFT adapter folder, which the Transformers loader applies; "
                                           "llama.cpp takes GGUF LoRA files: convert it"):
        gguf_adapter_file(peft)
    with pytest.raises(AdapterError, match="style.gguf is a GGUF file, which the llama.cpp loader applies"):
        peft_adapter_folder(lora)


def test_a_missing_path_and_a_file_that_is_no_adapter_get_the_same_line(tmp_path):
    (tmp_path / "there").mkdir()
    (tmp_path / "there" / "notes.gguf").write_text("not a GGUF")
    for check in (gguf_adapter_file, peft_adapter_folder):
        with pytest.raises(AdapterError) as missing:
            check(tmp_path / "notes.gguf")
        with pytest.raises(AdapterError) as other:
            check(tmp_path / "there" / "notes.gguf")
        assert str(missing.value) == str(other.value)
        assert str(tmp_path) not in str(missing.value)


def test_a_lora_for_this_model_passes(tmp_path, model_header):
    check_gguf_lora(write_lora(tmp_path / "ok.gguf", tensors={
        "blk.0.attn_q.weight": (576, 576), "blk.29.attn_v.weight": (576, 192)}), model_header)


@pytest.mark.parametrize(("kwargs", "words"), [
    (dict(arch="qwen2"), "bad.gguf is a LoRA for the qwen2 architecture; the loaded model is llama"),
    (dict(tensors={"blk.0.attn_q.weight": (2048, 2048)}),
     "bad.gguf is a LoRA for another base model: blk.0.attn_q.weight is 576x576 here, the adapter is for 2048x2048"),
    (dict(tensors={"blk.0.attn_v.weight": (576, 576)}), "blk.0.attn_v.weight is 576x192 here"),
    (dict(tensors={"blk.40.attn_q.weight": (576, 576)}), "this model has no tensor blk.40.attn_q.weight"),
    (dict(general_type="model"), "bad.gguf is a model, not a LoRA adapter"),
])
def test_a_lora_for_another_model_is_refused_in_one_line(tmp_path, model_header, kwargs, words):
    with pytest.raises(AdapterError, match=words) as caught:
        check_gguf_lora(write_lora(tmp_path / "bad.gguf", **kwargs), model_header)
    assert "\n" not in str(caught.value)


def test_a_model_file_given_as_a_lora_is_refused(default_model, model_header):
    with pytest.raises(AdapterError, match="is a model, not a LoRA adapter"):
        check_gguf_lora(default_model, model_header)


def test_a_truncated_lora_is_refused(tmp_path, model_header):
    good = write_lora(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good[:-100])
    with pytest.raises(AdapterError, match="cut.gguf: the GGUF file is truncated"):
        check_gguf_lora(cut, model_header)
