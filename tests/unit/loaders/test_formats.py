"""The one checkpoint-format rule (loaders.formats) and the loaders' use of it on disk:
which loader a folder gets, and what a wrong choice is told. Hand-written folders of
tiny files; no torch, no model."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import loaders
from loaders.base import LoadError
from loaders.formats import CheckpointFormat as F
from loaders.formats import classify
from loaders.hf_common import folder_format, model_format, require_format

GPTQ_CONFIG = {"model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4}}


@pytest.mark.parametrize("names, config, hint, expected", [
    (["model.gguf"], None, "", F.GGUF),
    (["config.json", "model.safetensors"], {}, "", F.SAFETENSORS),
    (["config.json", "model.safetensors"], GPTQ_CONFIG, "", F.GPTQ),
    (["config.json", "model.safetensors"], {"quantization_config": {"quant_method": "EXL2"}}, "", F.EXL2),
    (["config.json", "model.safetensors"], {"quantization_config": {"quant_method": "awq"}}, "", F.AWQ),
    (["config.json", "model.safetensors"], {"quantization_config": {"quant_method": "bitsandbytes"}}, "",
     F.SAFETENSORS),
    (["config.json", "quantize_config.json", "model.safetensors"], {}, "", F.GPTQ),
    (["config.json", "measurement.json", "output.safetensors"], {}, "", F.EXL2),
    (["config.json", "quant_config.json", "model.safetensors"], {}, "", F.AWQ),
    (["config.json", "pytorch_model.bin", "training_args.bin"], {}, "", F.PICKLE),
    (["config.json", "training_args.bin"], {}, "", None),
    (["config.json", "README.md"], {}, "", None),
    ([], None, "", None),
    # The name is a guess only while config.json is not known...
    (["model.safetensors"], None, "org/Model-GPTQ", F.GPTQ),
    (["model.safetensors"], None, "TheBloke/Model-AWQ", F.AWQ),
    (["model.safetensors"], None, "6.0bpw", F.EXL2),
    (["model.safetensors"], None, "exl2", F.EXL2),
    # ... and config.json, once read, wins over it.
    (["config.json", "model.safetensors"], {}, "org/Model-GPTQ", F.SAFETENSORS),
])
def test_classify(names, config, hint, expected):
    assert classify(names, config, name=hint) is expected


def test_exl2_tensor_names_mark_a_folder_without_the_config_entry():
    tensors = ["model.layers.0.self_attn.q_proj.q_weight", "model.layers.0.self_attn.q_proj.q_invperm"]
    assert classify(["config.json", "output.safetensors"], {}, tensor_names=tensors) is F.EXL2
    assert classify(["config.json", "model.safetensors"], {}, tensor_names=["model.layers.0.qweight"]) \
        is F.SAFETENSORS


def test_every_format_has_its_words():
    assert [f.kind for f in F] == ["gguf", "safetensors", "gptq", "exl2", "awq", "pickle"]
    assert all(f.label and f.description for f in F)
    assert F.from_kind("exl2") is F.EXL2


def write_safetensors(path: Path, names: list[str]) -> None:
    header = json.dumps({n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
                         for i, n in enumerate(names)}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4 * len(names)))


def folder(tmp_path: Path, name: str, config: dict | None, files: dict[str, list[str] | str]) -> Path:
    """A model folder: config.json (unless None), safetensors files with the given
    tensor names, and other files with the given text."""
    out = tmp_path / name
    out.mkdir()
    if config is not None:
        (out / "config.json").write_text(json.dumps(config))
    for file, content in files.items():
        if file.endswith(".safetensors"):
            write_safetensors(out / file, content)
        else:
            (out / file).write_text(content)
    return out


def test_each_format_gets_its_loader(tmp_path):
    plain = folder(tmp_path, "plain", {}, {"model.safetensors": ["w"]})
    gptq = folder(tmp_path, "gptq", GPTQ_CONFIG, {"model.safetensors": ["qweight"]})
    legacy = folder(tmp_path, "legacy", {}, {"quantize_config.json": "{}", "model.safetensors": ["qweight"]})
    exl2 = folder(tmp_path, "exl2", {}, {"output.safetensors": ["layers.0.q_weight"]})
    awq = folder(tmp_path, "awq", {"quantization_config": {"quant_method": "awq"}}, {"model.safetensors": ["w"]})
    pickled = folder(tmp_path, "pickled", {}, {"pytorch_model.bin": "never read"})
    assert [loaders.detect(p) for p in (plain, gptq, legacy, exl2, awq, pickled)] == \
        ["Transformers", "GPTQ", "GPTQ", "ExLlamaV2", "Transformers", "Transformers"]
    assert loaders.detect(plain / "model.safetensors") == "Transformers"  # a file in the folder
    assert model_format(exl2) is F.EXL2 and model_format(pickled) is F.PICKLE


def test_a_folder_without_a_readable_config_is_no_model_to_a_loader(tmp_path):
    loose = folder(tmp_path, "Model-GPTQ", None, {"model.safetensors": ["w"]})
    assert model_format(loose) is None and loaders.detect(loose) is None
    # The local model list still shows it, by the same rule with the name as a hint.
    assert folder_format(loose) is F.GPTQ


@pytest.mark.parametrize("loader, wanted", [("GPTQ", "a GPTQ checkpoint"), ("ExLlamaV2", "an EXL2")])
def test_a_wrong_loader_is_told_what_the_folder_is_and_which_loader_opens_it(tmp_path, loader, wanted):
    awq = folder(tmp_path, "awq", {"quantization_config": {"quant_method": "awq"}}, {"model.safetensors": ["w"]})
    chosen = loaders.get(loader)
    with pytest.raises(LoadError) as err:
        require_format(awq, chosen.name, chosen.formats)
    message = str(err.value)
    assert message.startswith("awq is an AWQ checkpoint, not ") and wanted in message
    assert message.endswith("choose the Transformers loader")


def test_every_format_is_opened_by_exactly_one_loader():
    owners = {f: [n for n in loaders.names() if f in getattr(loaders.get(n), "formats", ())] for f in F}
    assert all(len(names) == 1 for names in owners.values()), owners
