"""Grammar-constrained sampling for the llama.cpp backend, checked after sampling.

llama.cpp's grammar sampler is slow on a whole vocabulary: it walks the grammar's
stacks for every candidate (49,152 for SmolLM2), every token. With the grammar inside
the sampler chain, a JSON Schema reply ran at 0.62 x the speed of a free one
(bench/structured.py). So this does what llama.cpp's own common sampler does: sample
with the chain WITHOUT the grammar, check only the chosen token against the grammar
(one candidate), and only if the grammar rejects it apply the grammar to every
candidate and sample again. The grammar then accepts the token, as does the chain.

Greedy replies are exactly those of the grammar inside the chain: the top token, if
the grammar allows it, is also the top allowed token (penalties and DRY subtract from
or scale logits, so a -inf stays -inf whichever runs first). Plain random sampling
(temperature, no truncation) keeps the same distribution: it is rejection sampling.
With truncation (top-k, top-p, min-p, ...) a kept token comes from the truncated free
distribution, as in llama.cpp's tools; a resampled step runs the chain twice, so its
random state (and mirostat's mu) moves twice.

`llama_cpp` and numpy are imported inside functions, as in the rest of the loaders.
"""
from __future__ import annotations

import ctypes
import math


class GrammarCheckedSampler:
    """The interface llama-cpp-python's Llama and speculative.py call (`sample`),
    over `chain` (a LlamaSampler without the grammar) and `grammar` (a LlamaSampler
    holding only the grammar sampler). Owns both."""

    def __init__(self, chain, grammar, n_vocab: int):
        import llama_cpp
        import numpy as np

        self._chain, self._grammar, self._n_vocab = chain, grammar, n_vocab
        token_data = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        assert token_data.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)
        self._cells = np.zeros(n_vocab, dtype=token_data)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._data = ctypes.cast(self._cells.ctypes.data, ctypes.POINTER(llama_cpp.llama_token_data))
        self._candidates = llama_cpp.llama_token_data_array(self._data, n_vocab, -1, False)
        self._one = llama_cpp.llama_token_data(0, 1.0, 0.0)
        self._one_array = llama_cpp.llama_token_data_array(ctypes.pointer(self._one), 1, -1, False)
        # Tokens sampled, and those the grammar rejected (sampled again over every candidate).
        self.sampled = self.resampled = 0

    def sample(self, ctx, idx: int = -1) -> int:
        import llama_cpp

        logits = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
        token = self._apply(logits, self._chain)
        self.sampled += 1
        if not self._allows(token):
            self.resampled += 1
            token = self._apply(logits, self._grammar, self._chain)
        llama_cpp.llama_sampler_accept(self._grammar.sampler, token)
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)
        return token

    def _apply(self, logits, *samplers) -> int:
        """Fill the candidates from `logits` (all of the vocabulary, as
        llama_sampler_sample does), apply `samplers` in order, return the selected id."""
        import llama_cpp
        import numpy as np

        self._cells["id"] = self._ids  # samplers sort the cells in place
        self._cells["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        self._cells["p"] = 0.0
        c = self._candidates
        c.data, c.size, c.selected, c.sorted = self._data, self._n_vocab, -1, False
        for s in samplers:
            llama_cpp.llama_sampler_apply(s.sampler, ctypes.byref(c))
        if not 0 <= c.selected < c.size:
            raise RuntimeError("llama.cpp's sampler chain selected no token")
        return int(c.data[c.selected].id)

    def _allows(self, token: int) -> bool:
        import llama_cpp

        self._one.id, self._one.logit, self._one.p = token, 1.0, 0.0
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(self._grammar.sampler, ctypes.byref(self._one_array))
        return self._one.logit != -math.inf

    def accept(self, token: int) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_accept(self._grammar.sampler, token)
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)

    def reset(self) -> None:
        self._chain.reset()
        self._grammar.reset()

    def close(self) -> None:
        self._chain.close()
        self._grammar.close()
