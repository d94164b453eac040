"""KV-cache types and RoPE scaling on the real SmolLM2 GGUF through real llama.cpp:
a q8_0 cache answers like f16, the options reach llama.cpp, and every refusal is one
line that leaves the previous model loaded."""
from __future__ import annotations

import dataclasses
import threading

import pytest

from loaders.base import LoadError
from loaders.fields import build
from loaders.llamacpp import LlamaCppOptions
from loaders.params import GenerationParams
from webui.runtime.default_model import DEFAULT_MODEL_NAME
from webui.runtime.model_manager import ModelManager

PROMPT = "The capital of France is"
Q8_KV = {"n_ctx": 512, "type_k": "q8_0", "type_v": "q8_0", "flash_attn": True}


def greedy_text(manager: ModelManager, prompt: str = PROMPT, tokens: int = 12) -> str:
    with manager.use() as loaded:
        model = loaded.model
        params = GenerationParams(temperature=0, max_new_tokens=tokens)
        return "".join(model.generate(model.encode(prompt), params, threading.Event()))


@pytest.fixture(scope="module")
def manager(default_model):
    models = ModelManager()
    models.load(default_model, "llama.cpp", Q8_KV)
    yield models
    models.unload()


def assert_kept(manager: ModelManager) -> None:
    assert manager.current is not None and manager.current.name == DEFAULT_MODEL_NAME
    assert manager.current.options.type_k == "q8_0"
    assert "Paris" in greedy_text(manager)


def test_a_q8_0_kv_cache_answers_coherently(manager):
    assert manager.current.model._llm.context_params.type_k == 8  # GGML_TYPE_Q8_0
    assert manager.current.model._llm.context_params.type_v == 8
    text = greedy_text(manager, tokens=24)
    assert text.strip().startswith("Paris"), text


@pytest.mark.parametrize("values", [
    {"n_ctx": 512, "type_v": "q8_0"},  # no flash attention
    {"n_ctx": 512, "type_k": "q2_k"},
    {"n_ctx": 512, "rope_freq_base": -10000},
    {"n_ctx": 512, "rope_freq_scale": 4},
    {"n_ctx": 512, "rope_scaling": "linear", "yarn_ext_factor": 0.5},
])
def test_bad_options_are_one_line_and_the_previous_model_stays(manager, default_model, values):
    with pytest.raises(LoadError) as caught:
        manager.load(default_model, "llama.cpp", values)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300
    assert_kept(manager)


def test_a_kv_type_llama_cpp_refuses_is_one_line_and_the_previous_model_stays(manager, default_model):
    """The options refuse a quantized V cache without flash attention before unloading;
    here that check is bypassed, so llama.cpp itself refuses the context (as it does for
    a type a build or a model cannot use) and the model comes back."""
    options = build(LlamaCppOptions, Q8_KV)
    object.__setattr__(options, "flash_attn", False)
    with pytest.raises(LoadError) as caught:
        manager.load(default_model, "llama.cpp", options)
    message = str(caught.value)
    assert "cannot use type_k=q8_0, type_v=q8_0" in message and "kept" in message and "\n" not in message
    assert_kept(manager)


def test_rope_options_reach_llama_cpp(default_model):
    """A RoPE base far from the trained 100,000 changes what the model says; YaRN at
    half the frequency scale still loads and answers."""
    models = ModelManager()
    try:
        models.load(default_model, "llama.cpp", {"n_ctx": 512})
        plain = greedy_text(models)
        models.load(default_model, "llama.cpp", {"n_ctx": 512, "rope_freq_base": 1000})
        assert models.current.model._llm.context_params.rope_freq_base == 1000
        assert greedy_text(models) != plain
        yarn = dataclasses.asdict(build(LlamaCppOptions, {"n_ctx": 1024, "rope_scaling": "yarn",
                                                          "rope_freq_scale": 0.5, "yarn_orig_ctx": 512}))
        models.load(default_model, "llama.cpp", yarn)
        params = models.current.model._llm.context_params
        assert (params.rope_scaling_type, params.rope_freq_scale, params.yarn_orig_ctx) == (2, 0.5, 512)
        assert greedy_text(models).strip()
    finally:
        models.unload()
