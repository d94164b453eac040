"""The pure parts of speculative decoding: prompt lookup's drafts, the vocabulary
comparison, the counts and the option checks. The verification loop itself runs on the
real model in tests/integration/test_speculative.py."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from loaders.base import LoadError
from loaders.llamacpp import LlamaCppOptions
from loaders.speculative import (
    PromptLookup,
    SpeculationCounts,
    Vocabulary,
    check_choice,
    resolve_draft_path,
    vocabulary_difference,
)


def ids(*tokens: int) -> np.ndarray:
    return np.array(tokens, dtype=np.intc)


def test_prompt_lookup_continues_the_latest_earlier_match():
    # "1 2" occurs twice before the end; the later one (followed by 7 8) wins.
    context = ids(1, 2, 3, 4, 9, 1, 2, 7, 8, 5, 1, 2)
    assert PromptLookup(ngram=2, n_draft=3).draft(context, 10) == [7, 8, 5]


def test_prompt_lookup_prefers_the_longest_ngram_and_falls_back_to_shorter():
    # The 3-gram "6 1 2" occurs once, followed by 4; the 2-gram "1 2" occurs later, followed by 7.
    context = ids(6, 1, 2, 4, 0, 1, 2, 7, 0, 6, 1, 2)
    assert PromptLookup(ngram=3, n_draft=1).draft(context, 10) == [4]
    assert PromptLookup(ngram=2, n_draft=1).draft(context, 10) == [7]
    # No 3-gram or 2-gram match: one token "5" matches, if min_ngram allows one (not by default).
    context = ids(5, 8, 3, 9, 5)
    assert PromptLookup(ngram=3, n_draft=2, min_ngram=1).draft(context, 10) == [8, 3]
    assert PromptLookup(ngram=3, n_draft=2).draft(context, 10) == []
    assert PromptLookup(ngram=1, n_draft=2).draft(context, 10) == [8, 3]


def test_prompt_lookup_never_matches_the_suffix_itself_and_respects_the_room():
    assert PromptLookup(ngram=2, n_draft=5).draft(ids(1, 2, 3, 4), 10) == []
    assert PromptLookup(ngram=2, n_draft=5).draft(ids(7), 10) == []
    # A match whose continuation runs to the end of the context gives what there is.
    assert PromptLookup(ngram=1, n_draft=5).draft(ids(3, 3), 10) == [3]
    context = ids(1, 2, 3, 4, 5, 6, 1, 2)
    assert PromptLookup(ngram=2, n_draft=5).draft(context, 2) == [3, 4]
    assert PromptLookup(ngram=2, n_draft=5).draft(context, 0) == []


def test_acceptance_rate():
    counts = SpeculationCounts("prompt lookup", drafted=40, accepted=30, steps=12)
    assert counts.acceptance_rate == 0.75
    assert SpeculationCounts("draft model").acceptance_rate == 0.0


VOCAB = Vocabulary(kind=2, bos=1, eos=2, texts=(b"<s>", b"</s>", b"a", b"b", b"\xc4\xa0the"))


def test_the_same_vocabulary_has_no_difference():
    assert vocabulary_difference(VOCAB, replace(VOCAB)) is None


@pytest.mark.parametrize("draft, reason", [
    (replace(VOCAB, texts=VOCAB.texts[:-1]), "4 tokens, the model has 5"),
    (replace(VOCAB, kind=1), "another tokenizer type"),
    (replace(VOCAB, eos=3), "other begin/end-of-text tokens"),
    (replace(VOCAB, texts=(b"<s>", b"</s>", b"b", b"a", b"\xc4\xa0the")), "token 2 differs"),
])
def test_a_different_vocabulary_says_how(draft, reason):
    assert vocabulary_difference(VOCAB, draft) == reason


def test_draft_model_and_prompt_lookup_together_are_refused_in_one_line():
    check_choice(LlamaCppOptions(draft_model="small.gguf"))
    check_choice(LlamaCppOptions(prompt_lookup_ngram=3))
    with pytest.raises(LoadError, match="^draft_model and prompt_lookup_ngram are both set; choose one way to draft$"):
        check_choice(LlamaCppOptions(draft_model="small.gguf", prompt_lookup_ngram=3))


def test_a_draft_given_by_file_name_is_found_next_to_the_model(tmp_path, monkeypatch):
    model = tmp_path / "big.gguf"
    (tmp_path / "small.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path.parent)
    assert resolve_draft_path("small.gguf", model) == tmp_path / "small.gguf"
    assert resolve_draft_path("missing.gguf", model) == Path("missing.gguf")
    assert resolve_draft_path(str(tmp_path / "small.gguf"), Path("/elsewhere/big.gguf")) == tmp_path / "small.gguf"
