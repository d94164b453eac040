"""KV-cache types and RoPE scaling on the llama.cpp loader's options: the size arithmetic
(the load-time memory check and the will-it-fit estimate follow type_k/type_v), and the
one-line refusals of values and combinations llama.cpp cannot use."""
from __future__ import annotations

import re

import pytest

from loaders.fields import SettingError, build
from loaders.gguf import KV_CACHE_TYPES, kv_bytes_per_value, read_file_header
from loaders.llamacpp import LlamaCppLoader, LlamaCppOptions, _rope_arguments
from loaders.option_limits import MAX_CONTEXT_TOKENS
from webui.errors import UserError
from webui.modelfiles import fit
from webui.modelfiles.local import estimate_for

# SmolLM2-135M: 30 layers x 3 KV heads x 64 values per head, for K and for V.
VALUES = 30 * 3 * 64


def test_bytes_per_value_follow_ggml_blocks():
    assert kv_bytes_per_value("f16") == 2
    assert kv_bytes_per_value("f32") == 4
    assert kv_bytes_per_value("q8_0") == 34 / 32
    assert kv_bytes_per_value("q4_0") == 18 / 32
    assert set(KV_CACHE_TYPES) >= {"f16", "q8_0", "q4_0"}


def test_the_header_sizes_the_kv_cache_by_type(default_model):
    header = read_file_header(default_model)
    assert header.kv_values_per_token() == (VALUES, VALUES)
    # llama.cpp reports 360.00 MiB (f16) and 191.25 MiB (q8_0) for 16384 cells.
    assert header.kv_cache_bytes(16384) == 360 * 2**20
    assert header.kv_cache_bytes(16384, "q8_0", "q8_0") == 191.25 * 2**20
    assert header.kv_cache_bytes(1, "q8_0", "f16") == VALUES * (34 / 32 + 2)
    assert header.kv_cache_bytes(1, "q4_0", "q4_0") == VALUES * 2 * 18 / 32


def test_the_fit_estimate_follows_the_kv_type(default_model):
    f16, q8, q4 = (estimate_for(default_model, 8192, t, t) for t in ("f16", "q8_0", "q4_0"))
    assert f16.kv_bytes == 8192 * VALUES * 2 * 2
    assert q8.kv_bytes == f16.kv_bytes * 34 / 64 and q4.kv_bytes == f16.kv_bytes * 18 / 64
    assert q4.total_bytes < q8.total_bytes < f16.total_bytes
    assert q8.weights_bytes == f16.weights_bytes and q8.overhead_bytes == f16.overhead_bytes
    with pytest.raises(UserError, match="type_k must be one of"):
        estimate_for(default_model, 8192, "q3_k", "f16")


def test_a_transformers_config_keeps_its_own_kv_cache():
    """type_k/type_v are llama.cpp's: a config.json model's estimate does not change."""
    shape = fit.shape_from_config({"num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9,
                                   "num_key_value_heads": 3}, 10**8)
    assert fit.estimate(shape, 4096, "q4_0", "q4_0").kv_bytes == fit.estimate(shape, 4096).kv_bytes


def test_the_load_time_memory_check_follows_the_kv_type(default_model):
    """At the largest context no machine has the RAM; the refusal names the KV size of
    the chosen type, before llama.cpp allocates anything."""
    sizes = {}
    for kv in ("f16", "q8_0"):
        options = build(LlamaCppOptions, n_ctx=MAX_CONTEXT_TOKENS, type_k=kv, type_v=kv, flash_attn=True)
        with pytest.raises(UserError) as caught:
            LlamaCppLoader().load(default_model, options)
        sizes[kv] = float(re.search(r"needs ([\d.]+) GiB of KV cache", str(caught.value)).group(1))
    assert sizes["q8_0"] == pytest.approx(sizes["f16"] * 34 / 64, rel=0.01)


@pytest.mark.parametrize(("values", "message"), [
    ({"type_k": "q3_k"}, "type_k must be one of 'f16', 'q8_0'"),
    ({"type_v": "q8_0"}, "type_v=q8_0 needs flash_attn on"),
    ({"type_v": "q4_0", "type_k": "q4_0"}, "type_v=q4_0 needs flash_attn on"),
    ({"rope_freq_base": -1}, "rope_freq_base must be at least 0"),
    ({"rope_freq_base": 1e12}, "rope_freq_base must be at most"),
    ({"rope_freq_scale": 2}, "rope_freq_scale must be at most 1"),
    ({"rope_freq_scale": -0.5}, "rope_freq_scale must be at least 0"),
    ({"rope_scaling": "ntk"}, "rope_scaling must be one of"),
    ({"rope_scaling": "yarn", "yarn_ext_factor": 3}, "yarn_ext_factor must be at most 1"),
    ({"rope_scaling": "yarn", "yarn_orig_ctx": -1}, "yarn_orig_ctx must be at least 0"),
    ({"rope_scaling": "none", "rope_freq_scale": 0.5}, "does nothing with rope_scaling=none"),
    ({"rope_scaling": "linear", "yarn_orig_ctx": 8192}, "yarn_orig_ctx applies only with rope_scaling=yarn"),
])
def test_bad_values_are_one_line(values, message):
    with pytest.raises(SettingError) as caught:
        build(LlamaCppOptions, values)
    text = str(caught.value)
    assert message in text and "\n" not in text and len(text) < 200


def test_good_values_reach_llama_cpp_as_its_arguments():
    options = build(LlamaCppOptions, {"type_k": "q8_0", "type_v": "q4_0", "flash_attn": "on",
                                      "rope_scaling": "yarn", "rope_freq_scale": "0.25", "yarn_orig_ctx": 8192})
    assert (KV_CACHE_TYPES[options.type_k], KV_CACHE_TYPES[options.type_v]) == (8, 2)  # GGML_TYPE_Q8_0, Q4_0
    assert _rope_arguments(options) == dict(rope_scaling_type=2, rope_freq_base=0.0, rope_freq_scale=0.25,
                                            yarn_orig_ctx=8192, yarn_ext_factor=-1.0)
    # The defaults are llama-cpp-python's own "from the model" values.
    assert _rope_arguments(LlamaCppOptions()) == dict(rope_scaling_type=-1, rope_freq_base=0.0,
                                                      rope_freq_scale=0.0, yarn_orig_ctx=0, yarn_ext_factor=-1.0)
    # A quantized K cache alone works without flash attention.
    assert build(LlamaCppOptions, {"type_k": "q8_0"}).type_k == "q8_0"
