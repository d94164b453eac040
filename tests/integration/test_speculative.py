"""Speculative decoding on the real model through real llama.cpp: prompt lookup and a
draft model give the greedy reply the model gives alone and count what they drafted;
a draft model with another vocabulary is one line and the previous model stays."""
from __future__ import annotations

import shutil
import struct
import threading
from pathlib import Path

import pytest

from loaders.base import LoadError
from loaders.llamacpp import LlamaCppLoader, LlamaCppOptions
from loaders.params import GenerationParams
from loaders.speculative import SpeculationCounts, speculative_tokens, vocabulary_of
from tests.model_factory import requantized_gguf
from webui.api.completions import usage
from webui.runtime.generation import GenerationEngine
from webui.runtime.model_manager import ModelManager

# The reply copies the prompt's text, so prompt lookup finds most of it there.
TEXT = ("The old lighthouse stood on the northern cliff for two hundred years. Every night its keeper "
        "climbed the spiral stairs, trimmed the wick and watched the ships pass safely into the harbour.")
EDIT = ("<|im_start|>user\nRepeat this paragraph exactly:\n\n" + TEXT +
        "<|im_end|>\n<|im_start|>assistant\n")
GREEDY = GenerationParams(temperature=0.0, seed=1, max_new_tokens=48)
SHORT = GenerationParams(temperature=0.0, seed=1, max_new_tokens=20)


def reply(model, prompt: str, params: GenerationParams = GREEDY) -> str:
    return "".join(model.generate(model.encode(prompt), params, threading.Event()))


@pytest.fixture(scope="module")
def plain(default_model):
    model = LlamaCppLoader().load(default_model, LlamaCppOptions(n_ctx=512))
    yield model
    model.unload()


def test_prompt_lookup_gives_the_same_greedy_reply_and_counts_its_drafts(default_model, plain):
    manager = ModelManager()
    manager.load(default_model, "llama.cpp", {"n_ctx": 512, "prompt_lookup_ngram": 3})
    engine = GenerationEngine(manager)
    try:
        text, stats = engine.submit(EDIT, GREEDY).result()
    finally:
        engine.close()
        manager.unload()
    assert text == reply(plain, EDIT)
    assert stats.speculation == "prompt lookup"
    assert 0 < stats.accepted_draft_tokens <= stats.draft_tokens
    # The chat's status line and the API's usage show them.
    assert f"{stats.accepted_draft_tokens} of {stats.draft_tokens} drafted tokens accepted" in stats.summary()
    details = usage(stats)["completion_tokens_details"]
    assert details["accepted_prediction_tokens"] + details["rejected_prediction_tokens"] == stats.draft_tokens


class Scripted:
    """A drafter that proposes given tokens: the reply's own (all must be kept) or
    wrong ones (none may be)."""

    method = "scripted"

    def __init__(self, reply_ids: list[int], prompt_len: int, wrong: bool):
        self.reply_ids, self.prompt_len, self.wrong = reply_ids, prompt_len, wrong

    def draft(self, context, n):
        done = len(context) - self.prompt_len  # reply tokens in the context
        guess = self.reply_ids[done:done + min(n, 4)]
        return [(t + 1) % 1000 for t in guess] if self.wrong else guess

    def close(self):
        pass


@pytest.mark.parametrize("wrong", [False, True], ids=["right-drafts", "wrong-drafts"])
def test_verification_keeps_exactly_the_drafts_the_model_samples(plain, wrong):
    ids = plain.encode(EDIT)
    plain._params = GREEDY
    plain._prefill(list(ids))
    stream = plain._llm.generate(ids, reset=True)  # what LlamaCppModel.generate runs without speculation
    expected = [next(stream) for _ in range(24)]
    stream.close()
    plain._prefill(list(ids))
    counts = SpeculationCounts("scripted")
    tokens = []
    stream = speculative_tokens(plain._llm, ids, Scripted(expected, len(ids), wrong), counts, budget=24)
    for token in stream:
        tokens.append(token)
        if len(tokens) == 24:
            break
    stream.close()
    assert tokens == expected[:24]
    if wrong:
        assert counts.accepted == 0 and counts.steps == 24
    else:
        # 4 drafted a step, all kept: 5 tokens a step, the last step's draft cut to the budget.
        assert counts.accepted == counts.drafted == 24 - counts.steps and counts.steps == 5
    # The KV cache holds the prompt and the reply but its last token, no stale guesses.
    assert plain._llm.n_tokens == len(ids) + 24 - 1


def test_a_draft_model_drafts_for_the_larger_quantization(default_model):
    model = LlamaCppLoader().load(requantized_gguf("q8_0"),
                                  LlamaCppOptions(n_ctx=512, draft_model=str(default_model), draft_max=6))
    try:
        text = reply(model, EDIT, SHORT)
        counts = model.last_speculation
        # The same model with its drafter set aside generates as a model loaded without one.
        drafter, model._drafter = model._drafter, None
        expected = reply(model, EDIT, SHORT)
        model._drafter = drafter
    finally:
        model.unload()
    assert counts.method == "draft model"
    assert counts.drafted > 0 and counts.acceptance_rate > 0.5
    assert text == expected


def swapped_vocabulary_copy(source: Path, texts: tuple[bytes, ...], target: Path) -> int:
    """A copy of `source` with the texts of two neighbouring tokens of the same length
    swapped in its header (found as two consecutive length-prefixed strings): it loads,
    but those ids mean other text. Returns the first id. (gguf.GGUFReader would take
    20 s to parse the header here.)"""
    swap = next(i for i in range(1000, len(texts) - 1)
                if len(texts[i]) == len(texts[i + 1]) and texts[i] != texts[i + 1])
    a, b = texts[swap], texts[swap + 1]
    pair = struct.pack("<Q", len(a)) + a + struct.pack("<Q", len(b)) + b
    shutil.copyfile(source, target)
    with open(target, "r+b") as f:
        header = f.read(8 << 20)
        assert header.count(pair) == 1
        f.seek(header.index(pair))
        f.write(struct.pack("<Q", len(b)) + b + struct.pack("<Q", len(a)) + a)
    return swap


def test_a_draft_model_with_another_vocabulary_is_one_line_and_the_model_stays(default_model, tmp_path):
    manager = ModelManager()
    manager.load(default_model, "llama.cpp", {"n_ctx": 256})
    try:
        other = tmp_path / "swapped-vocab.gguf"
        swap = swapped_vocabulary_copy(default_model, vocabulary_of(manager.current.model._llm).texts, other)
        with pytest.raises(LoadError) as caught:
            manager.load(default_model, "llama.cpp", {"n_ctx": 256, "draft_model": str(other)})
        message = str(caught.value)
        assert message.startswith(f"draft_model swapped-vocab.gguf has another vocabulary than the model "
                                  f"(token {swap} differs)") and "\n" not in message
        assert "kept SmolLM2" in message
        assert manager.current is not None and manager.current.options.draft_model == ""
        assert reply(manager.current.model, "The capital of France is", GREEDY)
    finally:
        manager.unload()


def test_a_missing_draft_model_is_one_line_before_anything_loads(default_model, tmp_path):
    with pytest.raises(LoadError, match=r"^draft_model missing\.gguf: no such file, or not a GGUF file$"):
        LlamaCppLoader().load(default_model, LlamaCppOptions(n_ctx=256, draft_model=str(tmp_path / "missing.gguf")))
