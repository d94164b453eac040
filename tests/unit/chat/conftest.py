"""SmolLM2's own tokenizer, loaded by llama.cpp with vocab_only (no weights)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tokenizer(default_model):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(default_model), vocab_only=True, verbose=False)
    yield lambda text: llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    llm.close()
