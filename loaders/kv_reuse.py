"""Context shift: reuse a KV cache whose middle was dropped.

When a chat outgrows the context, the chat core drops its oldest turns and keeps the
system prompt and the character, so the new prompt is P + S where P (the fixed part)
is the start of what the KV cache holds and S (the kept turns) is held too, further
on: cached = P + D + S' with S' starting with a long run of S. Rather than evaluating
S again, `apply_shift` removes D's cells from llama.cpp's KV cache and moves the
run's cells down by len(D) positions, which llama.cpp does by rotating their keys
(RoPE) at the next decode; only the tokens after the run are then evaluated. This is
what llama-server's cache reuse and context shift do.

The moved keys were computed while D was still there and are rotated rather than
recomputed, so a reply after a shift may differ slightly from one where the whole
prompt was read again. It is still deterministic: the same chat and the same request
give the same shifts and the same reply.

`plan_shift` only looks at token ids; `apply_shift` does the llama.cpp calls.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The fewest reused tokens a shift is worth. Not for its cost: measured with
# SmolLM2-135M on one thread, rotating every cached key costs what evaluating 1.5
# tokens does at n_ctx 1024 and 3.4 at 4096. But below 32 tokens a match is as likely
# a chance repeat (a common phrase) as a kept turn, and keys computed beside other
# text are worth less than fresh ones.
MIN_REUSED_RUN = 32
# Places in the cache where the prompt's rest may start that are compared in full.
# A chat has one per earlier message at most; a cache of one token repeated would
# otherwise cost len(cache) squared.
MAX_CANDIDATES = 64


@dataclass(frozen=True)
class Shift:
    prefix: int  # P: cached tokens that stay where they are (the common prefix)
    dropped: int  # D: cached tokens after the prefix whose cells are removed
    run: int  # S': cached tokens after D that are kept, moved down by `dropped`

    @property
    def reused(self) -> int:
        """Prompt tokens the cache holds after the shift."""
        return self.prefix + self.run


def common_prefix(cached: Sequence[int], prompt: Sequence[int]) -> int:
    import numpy as np

    c = np.asarray(cached)
    p = np.asarray(prompt)
    n = min(len(c), len(p))
    same = c[:n] == p[:n]
    return n if bool(same.all()) else int(np.argmin(same))


def plan_shift(cached: Sequence[int], prompt: Sequence[int], min_run: int = MIN_REUSED_RUN) -> Shift | None:
    """The shift that reuses the most of `cached` for `prompt` beyond their common
    prefix, or None when none reuses at least `min_run` more tokens: no part of the
    prompt's rest is in the cache, the match is too short, or the prefix already
    covers the prompt or the cache. Of equally long runs, the nearest is taken (the
    smallest move)."""
    import numpy as np

    c = np.asarray(cached, dtype=np.int64)
    p = np.asarray(prompt, dtype=np.int64)
    prefix = common_prefix(c, p)
    rest = p[prefix:]
    if len(rest) < min_run or len(c) - prefix - 1 < min_run:
        return None
    head = rest[:min_run]
    # Where the rest could start: after at least one dropped token, with room for min_run.
    starts = np.flatnonzero(c[prefix + 1: len(c) - min_run + 1] == head[0]) + prefix + 1
    best: Shift | None = None
    checked = 0
    for j in starts.tolist():
        if not np.array_equal(c[j:j + min_run], head):
            continue
        n = min(len(c) - j, len(rest))
        same = c[j:j + n] == rest[:n]
        run = n if bool(same.all()) else int(np.argmin(same))
        if best is None or run > best.run:
            best = Shift(prefix, j - prefix, run)
            if run == len(rest):
                break  # the whole rest: nothing reuses more
        checked += 1
        if checked >= MAX_CANDIDATES:
            break
    return best


def apply_shift(llm, shift: Shift) -> bool:
    """Make `llm` (a llama_cpp.Llama) hold prompt[:shift.reused]: drop D's cells and
    the cells after the run, move the run down. False (and nothing changed) where the
    model's memory cannot do it: a recurrent or hybrid model (its state is a summary,
    not one cell per token), a memory that cannot shift positions (M-RoPE), or a
    sliding-window cache that has already let go of old cells."""
    import llama_cpp

    ctx = llm._ctx
    mem = ctx.memory
    if mem is None or llm._is_recurrent or llm._is_hybrid or not llama_cpp.llama_memory_can_shift(mem):
        return False
    if llama_cpp.llama_memory_seq_pos_min(mem, 0) != 0 or llama_cpp.llama_memory_seq_pos_max(mem, 0) != llm.n_tokens - 1:
        return False  # the cells do not match llm.input_ids one to one
    start = shift.prefix + shift.dropped
    end = start + shift.run
    # A plain KV cache cannot refuse these (only recurrent memories refuse a partial
    # removal, and those are excluded above).
    ctx.kv_cache_seq_rm(0, end, -1)
    ctx.kv_cache_seq_rm(0, shift.prefix, start)
    ctx.kv_cache_seq_shift(0, start, end, -shift.dropped)
    ids = llm.input_ids
    ids[shift.prefix:shift.reused] = ids[start:end].copy()
    llm.n_tokens = shift.reused
    return True
