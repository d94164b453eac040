"""Per-token log-probabilities from llama.cpp's raw logits.

What OpenAI and llama-server report: log-softmax over the model's logits for the
position that produced a token, before any sampler (temperature, top-k, penalties)
touched them, so the numbers describe the model, not the request's sampling.
`llama_cpp` and numpy come with the llm object passed in; nothing heavy is imported
at module import.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# OpenAI's limit for top_logprobs; each alternative costs a decode of its token text.
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprob:
    """One token: its text and bytes, its log-probability (None for a prompt's first
    token, which nothing predicts), and the `top` most likely tokens at its position
    as (text, bytes, logprob), most likely first."""
    token: str
    raw: bytes
    logprob: float | None
    top: tuple[tuple[str, bytes, float], ...] = ()


def log_softmax(logits):
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max()
    return shifted - np.log(np.exp(shifted).sum())


def _token_bytes(llm, token: int) -> bytes:
    return llm.detokenize([token], special=True)


def describe_token(llm, token: int, logits, top: int) -> TokenLogprob:
    """`token` as sampled from `logits` (one row, n_vocab floats)."""
    import numpy as np

    logp = log_softmax(logits)
    alternatives: tuple = ()
    if top > 0:
        best = np.argpartition(-logp, top - 1)[:top]
        best = best[np.argsort(-logp[best], kind="stable")]
        alternatives = tuple(_entry(llm, int(t), float(logp[t])) for t in best)
    raw = _token_bytes(llm, token)
    return TokenLogprob(raw.decode("utf-8", errors="replace"), raw, float(logp[token]), alternatives)


def _entry(llm, token: int, logprob: float) -> tuple[str, bytes, float]:
    raw = _token_bytes(llm, token)
    return raw.decode("utf-8", errors="replace"), raw, logprob


def last_logits(llm):
    """The logits llama.cpp holds for the last position it evaluated with outputs on:
    the row the sampler read for the token just sampled."""
    import llama_cpp
    import numpy as np

    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).copy()


def prompt_logprobs(llm, ids: Sequence[int], top: int) -> list[TokenLogprob]:
    """Each prompt token's log-probability given the tokens before it, evaluating the
    prompt with logits on at every position (batches of n_batch). Leaves the prompt in
    llm's KV cache and input_ids, so a reply that follows reuses it."""
    import llama_cpp
    import numpy as np

    ids = list(ids)
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    llm.n_tokens = 0
    n_vocab = llm.n_vocab()
    first = _token_bytes(llm, ids[0]) if ids else b""
    out = [TokenLogprob(first.decode("utf-8", errors="replace"), first, None)] if ids else []
    for start in range(0, len(ids), llm.n_batch):
        chunk = ids[start:start + llm.n_batch]
        llm._batch.set_batch(batch=chunk, n_past=start, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[start:start + len(chunk)] = chunk
        llm.n_tokens = start + len(chunk)
        for i in range(len(chunk)):
            position = start + i
            if position + 1 >= len(ids):
                break
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i), shape=(n_vocab,))
            out.append(describe_token(llm, ids[position + 1], row, top))
    return out

