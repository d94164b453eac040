"""LoRA adapters on the real models: a LoRA trained here (tests/model_factory.py:
ensure_lora, a few PEFT steps that make SmolLM2 answer "banana", and the same
converted by llama.cpp's own convert_lora_to_gguf.py) through llama.cpp and through
Transformers, applied and removed on the loaded model without reloading it, two at
once with scales, bad adapters refused in one line with the adapters applied kept, and
the same through the command line's --lora and the API's /v1/internal/model/lora."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from safetensors.numpy import save_file

from loaders.base import LoadError
from loaders.params import GenerationParams
from tests import model_factory
from tests.model_factory import LORA_PROMPTS, LORA_WORD
from tests.support import running_server
from webui.errors import UserError
from webui.hearth import Hearth

PROMPT = LORA_PROMPTS[0]  # "The capital of France is"
GREEDY = GenerationParams(temperature=0.0, seed=1, max_new_tokens=4)


@pytest.fixture(scope="module")
def lora() -> Path:
    return model_factory.ensure_lora()


def reply(hearth: Hearth) -> str:
    return hearth.complete(PROMPT, GREEDY).result()[0]


def lora_names(hearth: Hearth) -> list[str]:
    return [Path(entry.rpartition(":")[0]).name for entry in hearth.models.current.options.lora]


@pytest.fixture
def plain(hearth):
    """The session's llama.cpp model, its adapters removed again after the test."""
    hearth.set_adapters([])
    yield hearth
    hearth.set_adapters([])


def wrong_shape_peft(folder: Path, source: Path, key: str, shape: tuple[int, int]) -> Path:
    """A PEFT folder like `source` whose one LoRA matrix `key` has `shape`."""
    folder.mkdir()
    shutil.copy(source / "adapter_config.json", folder / "adapter_config.json")
    save_file({key: np.zeros(shape, dtype=np.float32)}, str(folder / "adapter_model.safetensors"))
    return folder


def test_a_gguf_lora_changes_the_reply_and_removing_it_restores_it_without_reloading(plain, lora):
    base = reply(plain)
    model = plain.models.current.model
    prompt_tokens = len(model.encode(PROMPT))
    assert reply(plain) == base and model.last_prompt_eval_tokens < prompt_tokens  # the KV cache is reused

    plain.set_adapters([str(lora / "banana.gguf")])
    adapted = reply(plain)
    assert adapted.split()[:2] == [LORA_WORD, LORA_WORD], adapted
    # Not one KV entry computed without the adapter is reused.
    assert model.last_prompt_eval_tokens == prompt_tokens
    assert plain.models.current.model is model and lora_names(plain) == ["banana.gguf"]

    plain.set_adapters([])
    assert reply(plain) == base
    assert model.last_prompt_eval_tokens == prompt_tokens
    assert plain.models.current.model is model and plain.models.current.options.lora == ()


def test_two_gguf_loras_apply_at_once_each_with_its_scale(plain, lora):
    base = reply(plain)
    # The negated copy cancels the trained one at the same scale, and at half the
    # scale leaves half of it.
    plain.set_adapters([str(lora / "banana.gguf"), str(lora / "banana-negated.gguf:1")])
    assert reply(plain) == base
    plain.set_adapters([str(lora / "banana.gguf:1"), str(lora / "banana-negated.gguf:0.5")])
    assert LORA_WORD in reply(plain)
    assert lora_names(plain) == ["banana.gguf", "banana-negated.gguf"]


def test_bad_loras_are_one_line_each_and_keep_the_adapters_applied(plain, lora, default_model, tmp_path):
    import gguf

    other_arch = tmp_path / "qwen-style.gguf"
    writer = gguf.GGUFWriter(other_arch, "qwen2")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((8, 896), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((896, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    plain.set_adapters([str(lora / "banana.gguf")])
    model = plain.models.current.model
    bad = {
        str(lora / "banana"): "banana is a PEFT adapter folder, which the Transformers loader applies",
        str(default_model): "is a model, not a LoRA adapter",
        str(other_arch): "qwen-style.gguf is a LoRA for the qwen2 architecture; the loaded model is llama",
        str(tmp_path / "missing.gguf"): "missing.gguf: no such file or folder, or not a GGUF LoRA file",
        f"{lora / 'banana.gguf'}:9": "scale of banana.gguf must be from -4 to 4",
    }
    for entry, words in bad.items():
        with pytest.raises(UserError) as caught:
            plain.set_adapters([entry])
        assert words in str(caught.value) and "\n" not in str(caught.value)
        assert plain.models.current.model is model and lora_names(plain) == ["banana.gguf"]
    assert LORA_WORD in reply(plain)


def test_a_load_with_a_bad_lora_keeps_the_previous_model(plain, tmp_path):
    with pytest.raises(LoadError, match=r"missing.gguf: no such file .* \(kept .* loaded\)"):
        plain.load_model(None, "llama.cpp", {"n_ctx": 2048, "lora": [str(tmp_path / "missing.gguf")]})
    assert plain.models.current is not None and plain.models.current.loader == "llama.cpp"


def test_peft_loras_on_transformers(lora, tmp_path):
    """Loaded with the lora option (a name in models/), then changed in place."""
    core = Hearth(models_dir=lora)
    try:
        core.load_model(str(model_factory.ensure_fp32()), "Transformers",
                        {"dtype": "float32", "device": "cpu", "lora": ["banana"]})
        model = core.models.current.model
        adapted = reply(core)
        assert adapted.split()[:2] == [LORA_WORD, LORA_WORD], adapted

        core.set_adapters([])
        base = reply(core)
        assert LORA_WORD not in base and core.models.current.model is model
        core.set_adapters(["banana", "banana-negated"])
        assert reply(core) == base
        core.set_adapters(["banana", "banana-negated:0.5"])
        assert LORA_WORD in reply(core)

        core.set_adapters(["banana"])
        layer = "base_model.model.model.layers.20.self_attn.q_proj"
        bad = {
            "banana.gguf": "banana.gguf is a GGUF file, which the llama.cpp loader applies as a LoRA",
            str(wrong_shape_peft(tmp_path / "wide", lora / "banana", f"{layer}.lora_A.weight", (8, 2048))):
                "wide is a LoRA for another base model (made for smollm2-135m-fp32-",
            str(wrong_shape_peft(tmp_path / "gpt2", lora / "banana", "base_model.model.transformer.h.0.attn.c_attn"
                                 ".lora_A.weight", (8, 768))): "this model has no layer transformer.h.0.attn.c_attn",
            str(tmp_path / "missing"): "missing: no such file or folder, or not a PEFT adapter folder",
        }
        for entry, words in bad.items():
            with pytest.raises(UserError) as caught:
                core.set_adapters([entry])
            assert words in str(caught.value) and "\n" not in str(caught.value)
        assert core.models.current.model is model and lora_names(core) == ["banana"]
    finally:
        core.unload_model()
        core.engine.close()


def test_the_command_line_and_the_api_set_loras(lora):
    with running_server("--n-ctx", "512", "--models-dir", str(lora), "--lora", "banana.gguf") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)

        def complete() -> str:
            return client.completions.create(model="x", prompt=PROMPT, max_tokens=4, temperature=0).choices[0].text

        def set_lora(entries: list[str]) -> httpx.Response:
            return httpx.post(url + "/v1/internal/model/lora", json={"lora": entries}, timeout=120)

        assert LORA_WORD in complete()
        removed = set_lora([])
        assert removed.status_code == 200 and removed.json()["options"]["lora"] == []
        assert LORA_WORD not in complete()
        refused = set_lora(["banana.gguf:9"])
        assert refused.status_code == 400
        assert "scale of banana.gguf must be from -4 to 4" in json.dumps(refused.json()["error"]["message"])
        applied = set_lora(["banana.gguf:1.5", "banana-negated.gguf:0.5"])
        assert applied.status_code == 200
        assert [Path(e).name for e in applied.json()["options"]["lora"]] == ["banana.gguf:1.5", "banana-negated.gguf:0.5"]
        assert LORA_WORD in complete()
