"""Bad input to the Hugging-Face-folder loaders, and format detection.

The folders here are small real checkpoints written by Transformers itself (a
one-layer Llama with random weights and SmolLM2's tokenizer), then broken on purpose.
The EXL2 folder is the one stand-in: a real EXL2 checkpoint can only be made with a
CUDA GPU (exllamav2's converter runs on one), so it is a config.json and a small
safetensors file with EXL2's tensor names, enough for detection and for the no-GPU
refusal, which happens before any weight is read.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path

import pytest

import loaders
from loaders.base import LoadError
from loaders.exllamav2 import NO_CUDA
from loaders.fields import build
from loaders.params import GenerationParams
from tests import model_factory
from webui.runtime.default_model import default_model_path
from webui.runtime.model_manager import ModelManager

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A real, tiny Llama checkpoint (random weights) with SmolLM2's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fp32 = model_factory.ensure_fp32()
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy2(fp32 / name, folder / name)
    return folder


def copy_of(folder: Path, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(folder, out)
    return out


def load(loader: str, path: Path, **options):
    chosen = loaders.get(loader)
    return chosen.load(path, build(chosen.Options, options))


def one_line_error(loader: str, path: Path, **options) -> str:
    with pytest.raises(LoadError) as err:
        load(loader, path, **options)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A valid safetensors file of zeros (no torch needed)."""
    sizes = {"F16": 2, "I32": 4, "I16": 2, "F32": 4}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def exl2_folder(tmp_path: Path, with_config_entry: bool) -> Path:
    """Stand-in EXL2 checkpoint (see the module docstring)."""
    folder = tmp_path / ("exl2-config" if with_config_entry else "exl2-tensors")
    folder.mkdir()
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "max_position_embeddings": 2048}
    if with_config_entry:
        config["quantization_config"] = {"quant_method": "exl2", "version": "0.3.2", "bits": 4.0, "head_bits": 6}
    (folder / "config.json").write_text(json.dumps(config))
    write_safetensors(folder / "output.safetensors", {
        "model.layers.0.self_attn.q_proj.q_weight": ("I32", [8, 16]),
        "model.layers.0.self_attn.q_proj.q_scale": ("I32", [2, 16]),
        "model.layers.0.self_attn.q_proj.q_scale_max": ("F16", [2]),
        "model.layers.0.self_attn.q_proj.q_invperm": ("I16", [64]),
        "model.layers.0.self_attn.q_proj.q_groups": ("I16", [4]),
    })
    return folder


# --- pickle weights ------------------------------------------------------------------

def test_a_folder_with_only_bin_weights_is_refused(tiny_model, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy2(tiny_model / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"never read: refused before loading")
    assert loaders.detect(folder) == "Transformers"
    message = one_line_error("Transformers", folder)
    assert "pickle" in message and "allow_pickle" in message and "safetensors" in message


def test_pickle_weights_load_when_the_user_allows_it(tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = copy_of(tiny_model, tmp_path, "pickled-real")
    # Transformers 5 no longer writes pickle checkpoints; torch.save writes the old format.
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    one_line_error("Transformers", folder)
    model = load("Transformers", folder, allow_pickle=True)
    try:
        import threading
        pieces = list(model.generate(model.encode("Hello"), GenerationParams(temperature=0, max_new_tokens=3,
                                                                              ignore_eos=True), threading.Event()))
        assert len(pieces) == 3
    finally:
        model.unload()


# --- remote code -----------------------------------------------------------------------

def remote_code_folder(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model, re-declared as a custom architecture whose code ships with it.
    The code writes a marker file when it is imported, so the test sees whether it ran."""
    folder = copy_of(tiny_model, tmp_path, "custom-code")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="hearth_remote_test", architectures=["HearthTestForCausalLM"],
                  auto_map={"AutoConfig": "configuration_hearth.HearthTestConfig",
                            "AutoModelForCausalLM": "modeling_hearth.HearthTestForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    marker = "import os\nopen(os.environ['HEARTH_REMOTE_CODE_MARKER'], 'a').write(__name__ + '\\n')\n"
    (folder / "configuration_hearth.py").write_text(
        marker + "from transformers import LlamaConfig\n\n"
        "class HearthTestConfig(LlamaConfig):\n    model_type = 'hearth_remote_test'\n")
    (folder / "modeling_hearth.py").write_text(
        marker + "from transformers import LlamaForCausalLM\nfrom .configuration_hearth import HearthTestConfig\n\n"
        "class HearthTestForCausalLM(LlamaForCausalLM):\n    config_class = HearthTestConfig\n")
    return folder


def test_remote_code_is_refused_while_trust_remote_code_is_off(tiny_model, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("HEARTH_REMOTE_CODE_MARKER", str(marker))
    folder = remote_code_folder(tiny_model, tmp_path)
    assert loaders.detect(folder) == "Transformers"
    message = one_line_error("Transformers", folder)
    assert "trust_remote_code" in message and "auto_map" in message
    assert not marker.exists(), "the model's own code ran although trust_remote_code was off"


def test_remote_code_runs_when_trusted(tiny_model, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("HEARTH_REMOTE_CODE_MARKER", str(marker))
    folder = remote_code_folder(tiny_model, tmp_path)
    model = load("Transformers", folder, trust_remote_code=True)
    try:
        assert type(model.hf_model).__name__ == "HearthTestForCausalLM"
        assert "modeling_hearth" in marker.read_text()
    finally:
        model.unload()


# --- corrupt files ---------------------------------------------------------------------

@pytest.mark.parametrize("damage, expected", [
    ("header length", "corrupt safetensors header"),
    ("header json", "corrupt safetensors header"),
    ("truncated", "truncated"),
])
def test_a_corrupt_safetensors_file_is_named(tiny_model, tmp_path, damage, expected):
    folder = copy_of(tiny_model, tmp_path, "corrupt")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "header length":
        data[0:8] = struct.pack("<Q", len(data) * 4)
    elif damage == "header json":
        data[8:16] = b"\x00garbage"
    else:
        data = data[: len(data) // 2]
    weights.write_bytes(bytes(data))
    assert loaders.detect(folder) == "Transformers"
    message = one_line_error("Transformers", folder)
    assert "model.safetensors" in message and expected in message


def test_a_failed_load_keeps_the_previous_model(tiny_model, tmp_path):
    folder = copy_of(tiny_model, tmp_path, "corrupt-after-good")
    manager = ModelManager()
    manager.load(tiny_model, "Transformers")
    (folder / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(LoadError, match="kept tiny-llama loaded"):
        manager.load(folder, "Transformers")
    assert manager.current.path == tiny_model
    manager.unload()


# --- EXL2 without CUDA -------------------------------------------------------------------

def test_exl2_without_cuda_says_a_gpu_is_needed(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the no-GPU refusal does not apply")
    folder = exl2_folder(tmp_path, with_config_entry=True)
    assert one_line_error("ExLlamaV2", folder) == NO_CUDA
    assert "CUDA GPU" in NO_CUDA
    # It refused before importing exllamav2, whose import starts a CUDA compile.
    assert "exllamav2" not in sys.modules


# --- detection and wrong choices ---------------------------------------------------------

def gptq_folder(tmp_path: Path, legacy: bool) -> Path:
    folder = tmp_path / ("gptq-legacy" if legacy else "gptq")
    folder.mkdir()
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    quant = {"quant_method": "gptq", "bits": 4, "group_size": 64}
    if legacy:  # AutoGPTQ wrote quantize_config.json beside a plain config.json
        (folder / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": 64}))
    else:
        config["quantization_config"] = quant
    (folder / "config.json").write_text(json.dumps(config))
    write_safetensors(folder / "model.safetensors", {"model.layers.0.self_attn.q_proj.qweight": ("I32", [2, 16])})
    return folder


def test_detection_picks_the_loader_for_each_format(tiny_model, tmp_path):
    assert loaders.detect(default_model_path()) == "llama.cpp"
    assert loaders.detect(tiny_model) == "Transformers"
    assert loaders.detect(tiny_model / "config.json") == "Transformers"  # picking a file in the folder
    assert loaders.detect(tiny_model / "model.safetensors") == "Transformers"
    assert loaders.detect(gptq_folder(tmp_path, legacy=False)) == "GPTQ"
    assert loaders.detect(gptq_folder(tmp_path, legacy=True)) == "GPTQ"
    assert loaders.detect(exl2_folder(tmp_path, with_config_entry=True)) == "ExLlamaV2"
    assert loaders.detect(exl2_folder(tmp_path, with_config_entry=False)) == "ExLlamaV2"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert loaders.detect(empty) is None
    (tmp_path / "notes.txt").write_text("not a model")
    assert loaders.detect(tmp_path / "notes.txt") is None


def test_detection_order_is_gguf_exl2_gptq_transformers():
    order = [n for n in loaders.names() if n in ("llama.cpp", "ExLlamaV2", "GPTQ", "Transformers")]
    assert order == ["llama.cpp", "ExLlamaV2", "GPTQ", "Transformers"]


@pytest.mark.parametrize("loader, target, right", [
    ("Transformers", "gguf", "llama.cpp"),
    ("GPTQ", "gguf", "llama.cpp"),
    ("ExLlamaV2", "gguf", "llama.cpp"),
    ("GPTQ", "plain", "Transformers"),
    ("ExLlamaV2", "plain", "Transformers"),
    ("Transformers", "gptq", "GPTQ"),
    ("ExLlamaV2", "gptq", "GPTQ"),
    ("Transformers", "exl2", "ExLlamaV2"),
    ("GPTQ", "exl2", "ExLlamaV2"),
])
def test_a_wrong_loader_names_the_right_one(tiny_model, tmp_path, loader, target, right):
    path = {"gguf": lambda: default_model_path(), "plain": lambda: tiny_model,
            "gptq": lambda: gptq_folder(tmp_path, legacy=False),
            "exl2": lambda: exl2_folder(tmp_path, with_config_entry=True)}[target]()
    message = one_line_error(loader, path)
    assert f"choose the {right} loader" in message


def test_a_folder_without_config_is_explained(tmp_path):
    folder = tmp_path / "loose"
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", {"w": ("F32", [2])})
    message = one_line_error("Transformers", folder)
    assert "config.json" in message


@pytest.mark.parametrize("loader, module, extra", [
    ("Transformers", "transformers", "transformers"),
    ("GPTQ", "gptqmodel", "gptq"),
])
def test_a_missing_library_names_the_extra_to_install(tiny_model, tmp_path, monkeypatch, loader, module, extra):
    """The library is hidden from import (sys.modules[name] = None makes `import`
    fail as if it were not installed); uninstalling it here would break the suite."""
    path = tiny_model if loader == "Transformers" else gptq_folder(tmp_path, legacy=False)
    monkeypatch.setitem(sys.modules, module, None)
    message = one_line_error(loader, path)
    assert f"hearth[{extra}]" in message


def test_registering_the_loaders_imports_no_heavy_library():
    import subprocess

    code = ("import sys, loaders; loaders.detect('.'); "
            "print(sorted(m for m in ('torch', 'transformers', 'gptqmodel', 'exllamav2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONPATH": "."})
    assert out.stdout.strip() == "[]"
