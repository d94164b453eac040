"""One contract, every loader that can run on this machine: llama.cpp (the built-in
GGUF), Transformers in float32 and bfloat16, and GPTQ 4-bit, all real models made from
the same SmolLM2 weights (tests/model_factory.py), driven through Hearth's core (a
ModelManager and the GenerationEngine), the way the UI and the API drive them.

ExLlamaV2 is not here: it needs a CUDA GPU, and this machine has none; its error path
and format detection are in test_loader_errors.py. scripts/gpu_check.sh runs this same
contract on a lent GPU, ExLlamaV2 included, through the HEARTH_CONTRACT_* variables
below; unset, they change nothing.

Tests run in file order for each loader, which is loaded once; the last test unloads it.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

import loaders
from loaders.params import CORE_PARAMS, PARAM_NAMES, GenerationParams
from tests import model_factory
from webui.chat.prompts import chat_prompt
from webui.runtime.default_model import default_model_path
from webui.runtime.generation import Delta, Failed, Finished, GenerationEngine
from webui.runtime.model_manager import ModelManager

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
UNSUPPORTED_BY_TRANSFORMERS = frozenset({
    "top_n_sigma", "dynatemp_range", "dynatemp_exponent", "dry_multiplier", "dry_base",
    "dry_allowed_length", "dry_penalty_last_n", "xtc_probability", "xtc_threshold",
    "mirostat_mode", "mirostat_tau", "mirostat_eta", "grammar",
})


# For scripts/gpu_check.sh. HEARTH_CONTRACT_DEVICE=cuda: Transformers on the GPU and
# llama.cpp with every layer offloaded; HEARTH_CONTRACT_GGUF / _HF / _EXL2: the model the
# llama.cpp / Transformers / ExLlamaV2 cases load; HEARTH_CONTRACT_CASES: which case ids
# run (comma-separated; default the four that run on a CPU); HEARTH_CONTRACT_LLAMA_OPTIONS:
# JSON options added to the llama.cpp case's (the fix scripts/gpu_llama_probe.py found).
ON_GPU = os.environ.get("HEARTH_CONTRACT_DEVICE") == "cuda"
DEVICE = "cuda" if ON_GPU else "cpu"
LLAMA_FIX = json.loads(os.environ.get("HEARTH_CONTRACT_LLAMA_OPTIONS") or "{}")


def _model(variable: str, default: Callable[[], Path]) -> Callable[[], Path]:
    path = os.environ.get(variable)
    return (lambda: Path(path)) if path else default


def _no_exl2_model() -> Path:
    raise pytest.UsageError("the exllamav2 case needs HEARTH_CONTRACT_EXL2 (an EXL2 folder)")


@dataclass(frozen=True)
class Case:
    loader: str
    model: Callable[[], Path]
    options: dict[str, Any]
    weight_bytes_factor: float = 1.0  # weights in RAM / weight files on disk
    unsupported: frozenset[str] = frozenset()


GGUF = _model("HEARTH_CONTRACT_GGUF", default_model_path)
HF = _model("HEARTH_CONTRACT_HF", model_factory.ensure_fp32)
ALL_CASES = {
    "llama.cpp": Case("llama.cpp", GGUF, {"n_ctx": 2048, **({"n_gpu_layers": -1} if ON_GPU else {}), **LLAMA_FIX}),
    "transformers-fp32": Case("Transformers", HF, {"dtype": "float32", "device": DEVICE},
                              unsupported=UNSUPPORTED_BY_TRANSFORMERS),
    "transformers-bf16": Case("Transformers", HF, {"dtype": "bfloat16", "device": DEVICE},
                              weight_bytes_factor=0.5, unsupported=UNSUPPORTED_BY_TRANSFORMERS),
    "gptq": Case("GPTQ", model_factory.ensure_gptq, {"device": "cpu"}, unsupported=UNSUPPORTED_BY_TRANSFORMERS),
    # Only when named in HEARTH_CONTRACT_CASES:
    "transformers-fp16": Case("Transformers", HF, {"dtype": "float16", "device": DEVICE},
                              weight_bytes_factor=0.5, unsupported=UNSUPPORTED_BY_TRANSFORMERS),
    "exllamav2": Case("ExLlamaV2", _model("HEARTH_CONTRACT_EXL2", _no_exl2_model), {"max_seq_len": 2048},
                      unsupported=frozenset({"top_n_sigma", "grammar"})),
}
CASES = {name: ALL_CASES[name] for name in
         os.environ.get("HEARTH_CONTRACT_CASES", "llama.cpp,transformers-fp32,transformers-bf16,gptq").split(",")}


@dataclass
class Loaded:
    case: Case
    path: Path
    manager: ModelManager
    engine: GenerationEngine
    rss_before: int
    replies: dict[str, str] = field(default_factory=dict)

    @property
    def model(self):
        return self.manager.current.model

    def prompt(self) -> str:
        return chat_prompt(self.model.chat_template, QUESTION)

    def run(self, params: GenerationParams):
        return self.engine.submit(self.prompt(), params).result()


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _in_use(loader: str) -> int:
    """This process's RSS, plus on CUDA its GPU memory (llama.cpp keeps the token
    embeddings in RAM and offloads the rest): PyTorch's pool for the backends that
    allocate through it, the whole GPU's use for llama.cpp, which allocates outside it
    (gpu_check.sh runs nothing else on the GPU meanwhile)."""
    used = _rss()
    if ON_GPU:
        import torch

        if loader == "llama.cpp":
            free, total = torch.cuda.mem_get_info()
            used += total - free
        else:
            used += torch.cuda.memory_reserved()
    return used


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def loaded(request):
    case = CASES[request.param]
    path = case.model()  # builds the test model on first use (cached between runs)
    if case.loader != "llama.cpp" or ON_GPU:
        import torch  # noqa: F401  (so its own RSS is not counted as the model's)
    _in_use(case.loader)  # on CUDA, the first call makes the CUDA context: not the model's either
    manager = ModelManager()
    engine = GenerationEngine(manager)
    before = _in_use(case.loader)
    manager.load(path, case.loader, case.options)
    yield Loaded(case, path, manager, engine, before)
    manager.unload()
    engine.close()


def greedy(**overrides) -> GenerationParams:
    return GenerationParams(**{"temperature": 0.0, "seed": 42, "max_new_tokens": 24, **overrides})


def test_detects_its_own_format(loaded):
    assert loaders.detect(loaded.path) == loaded.case.loader


def test_encode_decode_round_trip(loaded):
    model = loaded.model
    for text in ["Hello, world!", "héllo wörld 日本語 🙂 — tabs\tand\nnewlines", "  leading spaces"]:
        ids = model.encode(text)
        assert ids and all(isinstance(i, int) for i in ids)
        assert model.decode(ids) == text
    assert model.context_length >= 2048
    assert model.chat_template and "<|im_start|>" in model.chat_template


def test_seeded_greedy_reply_is_repeatable_and_right(loaded):
    first, stats = loaded.run(greedy())
    second, _ = loaded.run(greedy())
    assert first == second
    assert "Paris" in first, first
    assert stats.prompt_tokens == len(loaded.model.encode(loaded.prompt()))
    assert stats.completion_tokens >= 3 and stats.finish_reason == "stop"
    loaded.replies["greedy"] = first


def test_seeded_sampling_is_repeatable_and_samplers_are_honoured(loaded):
    sampled = dict(temperature=1.2, top_k=0, top_p=1.0, min_p=0.0, seed=1234, max_new_tokens=12)
    a, _ = loaded.run(greedy(**sampled))
    b, _ = loaded.run(greedy(**sampled))
    assert a == b
    # top_k=1 leaves only the most likely token: sampling must then give the greedy reply.
    only_top, _ = loaded.run(greedy(temperature=1.5, top_k=1, seed=7))
    assert only_top == loaded.replies["greedy"]


def test_streaming_yields_text_deltas(loaded):
    job = loaded.engine.submit(loaded.prompt(), greedy())
    deltas, end = [], None
    for event in job.events():
        if isinstance(event, Delta):
            deltas.append(event.text)
        else:
            end = event
    assert isinstance(end, Finished), end
    assert len(deltas) >= 3 and all(deltas)
    assert "".join(deltas) == loaded.replies["greedy"]
    assert end.stats.completion_tokens >= len(deltas)


def test_stop_string_ends_the_reply_before_it(loaded):
    reply = loaded.replies["greedy"]
    stop = "Paris"
    text, stats = loaded.run(greedy(stop=(stop,)))
    assert text == reply[:reply.index(stop)]
    assert stats.finish_reason == "stop"


def test_max_new_tokens_ends_with_length(loaded):
    _, stats = loaded.run(greedy(max_new_tokens=3, ignore_eos=True))
    assert stats.completion_tokens == 3 and stats.finish_reason == "length"


def test_cancel_stops_within_one_token(loaded):
    params = greedy(max_new_tokens=200, ignore_eos=True)
    # The model's own contract: after `cancel` is set, at most one more piece.
    with loaded.manager.use() as current:
        model = current.model
        cancel = threading.Event()
        stream = model.generate(model.encode(loaded.prompt()), params, cancel)
        next(stream), next(stream)
        cancel.set()
        assert len(list(stream)) <= 1
    # And through the engine, as the UI's Stop button does it.
    job = loaded.engine.submit(loaded.prompt(), params)
    for event in job.events():
        if isinstance(event, Delta):
            job.stop()
        elif isinstance(event, Failed):
            pytest.fail(event.message)
        else:
            # The engine may be some tokens ahead of this thread when it calls stop()
            # (the exact one-token bound is the model-level check above).
            assert event.stats.finish_reason == "cancelled"
            assert event.stats.completion_tokens < 100


def test_unsupported_parameters_are_reported(loaded):
    supported = loaded.model.supported_params
    assert CORE_PARAMS | {"temperature", "top_k", "top_p", "min_p", "seed"} <= supported <= PARAM_NAMES
    assert PARAM_NAMES - supported == loaded.case.unsupported


def test_unload_frees_memory(loaded):
    """Last for each loader: unloads the model the tests above shared."""
    weights = loaded.path.stat().st_size if loaded.path.is_file() else sum(
        f.stat().st_size for f in loaded.path.glob("*.safetensors"))
    expected = weights * loaded.case.weight_bytes_factor
    # Measured now, not at load: mmapped weights are paged in by the generations above.
    in_use = _in_use(loaded.case.loader)
    assert in_use - loaded.rss_before > 0.5 * expected
    model = loaded.model
    loaded.manager.unload()
    freed = in_use - _in_use(loaded.case.loader)
    assert freed > 0.5 * expected, f"freed {freed >> 20} MiB of a {int(expected) >> 20} MiB model"
    assert loaded.manager.current is None
    # A second unload of the model object is harmless.
    model.unload()
