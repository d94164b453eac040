"""The Transformers loader's own token loop (loaders/hf_decode.py) against Transformers'
`model.generate` on the same loaded fp32 model: the same text, greedy and sampled with
a seed, penalties and ignore_eos included, so the loop that replaced `generate` (and
its helper thread, 16x slower on a GPU) gives users what Transformers would.

Whether the hot loop copies logits to the host is not tested by counting calls: a spy
on Tensor.cpu/tolist/item would break with any internal change of Transformers and
says nothing about a GPU. The loop's shape is tested instead, with a forward hook on
the real model: one forward per token, over the one new token (the KV cache reused),
all in the consumer's thread.
"""
from __future__ import annotations

import threading

import pytest

import loaders
from loaders.hf_model import generation_kwargs, penalties_processor
from loaders.params import GenerationParams
from tests import model_factory
from webui.chat.prompts import chat_prompt

QUESTION = [{"role": "user", "content": "Tell me about Paris."}]
TOKENS = 10


@pytest.fixture(scope="module")
def model():
    loader = loaders.get("Transformers")
    loaded = loader.load(model_factory.ensure_fp32(), loader.Options(dtype="float32", device="cpu", cpu_threads=1))
    yield loaded
    loaded.unload()


@pytest.fixture(scope="module")
def prompt_ids(model) -> list[int]:
    return model.encode(chat_prompt(model.chat_template, QUESTION))


def hearth_text(model, prompt_ids: list[int], params: GenerationParams) -> str:
    return "".join(model.generate(prompt_ids, params, threading.Event()))


def generate_text(model, prompt_ids: list[int], params: GenerationParams) -> str:
    """Transformers' own `model.generate` with the same settings and seed."""
    import torch

    hf = model.hf_model
    input_ids = torch.tensor([prompt_ids])
    pen = penalties_processor(params)
    torch.manual_seed(params.seed)
    with torch.inference_mode():
        out = hf.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                          pad_token_id=hf.generation_config.eos_token_id, logits_processor=[pen] if pen else None,
                          **generation_kwargs(params, params.max_new_tokens))
    return model.decode(out[0, len(prompt_ids):].tolist())


@pytest.mark.parametrize("params", [
    GenerationParams(temperature=0.0, max_new_tokens=TOKENS, ignore_eos=True),
    GenerationParams(temperature=0.9, top_k=40, top_p=0.9, min_p=0.05, typical_p=0.95, repetition_penalty=1.3,
                     repetition_penalty_range=16, presence_penalty=0.2, seed=7, max_new_tokens=TOKENS,
                     ignore_eos=True),
], ids=["greedy", "sampled"])
def test_same_text_as_model_generate(model, prompt_ids, params):
    assert hearth_text(model, prompt_ids, params) == generate_text(model, prompt_ids, params)


def test_one_forward_per_token_over_the_new_token_in_the_callers_thread(model, prompt_ids):
    calls: list[tuple[int, bool, int]] = []

    def record(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        calls.append((ids.shape[-1], cache is not None, threading.get_ident()))

    hook = model.hf_model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        pieces = list(model.generate(prompt_ids, GenerationParams(temperature=0.0, max_new_tokens=TOKENS,
                                                                  ignore_eos=True), threading.Event()))
    finally:
        hook.remove()
    assert len(pieces) == TOKENS
    assert len(calls) == TOKENS  # no forward for a token that is not wanted
    assert calls[0][:2] == (len(prompt_ids), False)  # the prompt, read once
    assert all(c[:2] == (1, True) for c in calls[1:])  # then one new token against the cache
    assert {c[2] for c in calls} == {threading.get_ident()}  # no helper thread


def test_a_set_cancel_stops_before_the_next_forward(model, prompt_ids):
    cancel = threading.Event()
    stream = model.generate(prompt_ids, GenerationParams(temperature=0.0, max_new_tokens=TOKENS, ignore_eos=True),
                            cancel)
    next(stream)
    cancel.set()
    assert list(stream) == []
