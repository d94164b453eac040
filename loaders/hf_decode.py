"""Transformers' decoding loop, one token at a time, in the caller's thread.

Why not `model.generate` with a streamer in a helper thread (what Hearth did first):
on an H200, that path ran at 23 tok/s where a plain `model.generate` ran at 374 on the
same fp16 model (docs/GPU.md), about 40 ms more per token. The one per-token work it
added was the hand-off: a small model's GPU step is ~2.7 ms of Python launching
kernels with the GIL held, and every token crossed to the consumer thread and back,
two GIL hand-offs and two OS wake-ups on a host whose cores the builds kept busy
(the likely cost: the interpreter's 5 ms switch interval and scheduler slices; not
measured on a GPU yet). On the CPU the matmuls release the GIL, and the hand-off cost
nothing measurable. Here the consumer pulls each token from this generator: one
thread, no hand-off, no streamer, no stopping-criteria kernels.

Per token the loop does O(1) small work: one forward over the new token with the
model's own KV cache (the prompt is read once), the logits processors on the device,
the pick on the device, and one 8-byte device->host copy (`int(token)`), which
`model.generate` pays too (its stopping check syncs every step). The logits never
leave the device. The token ids are preallocated for the whole reply and passed as
views, not concatenated per token.

What it reproduces of `model.generate`: the same forward (`logits_to_keep=1`, the
cache the model makes for itself; no attention mask: see decode_tokens), the same
processors in the same order (generate's built-in ones, then Hearth's penalties, then
the sampling warpers), fp32 scores, argmax or `torch.multinomial` on the softmax, so
that the same seed gives the same tokens (tests/integration/test_hf_decode.py checks
this against `model.generate`). torch and transformers are imported inside the
functions.
"""
from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ForwardStyle:
    """How this Transformers version's model takes its KV cache and trims its logits."""

    cache_name: str  # "cache" (Transformers >= 5.2x) or "past_key_values"
    logits_to_keep: bool

    @staticmethod
    def of(model) -> ForwardStyle:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps it
        names = inspect.signature(base.forward).parameters
        return ForwardStyle("cache" if "cache" in names else "past_key_values", "logits_to_keep" in names)


def logits_processors(kwargs: dict[str, Any], penalties, eos_ids: Iterable[int], prompt_length: int, device):
    """The processors `model.generate(**kwargs, logits_processor=[penalties])` would
    build from these settings, in its order: MinNewTokens (EOS masked until then),
    the caller's penalties, then, when sampling, temperature, top-k, top-p, min-p,
    typical-p."""
    import torch
    from transformers import (
        LogitsProcessorList,
        MinNewTokensLengthLogitsProcessor,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    out = LogitsProcessorList()
    eos = sorted(set(eos_ids))
    if kwargs.get("min_new_tokens") and eos:
        out.append(MinNewTokensLengthLogitsProcessor(prompt_length, kwargs["min_new_tokens"],
                                                     torch.tensor(eos, device=device), device=device))
    if penalties is not None:
        out.append(penalties)
    if kwargs.get("do_sample"):
        if kwargs.get("temperature") is not None and kwargs["temperature"] != 1.0:
            out.append(TemperatureLogitsWarper(kwargs["temperature"]))
        if kwargs.get("top_k"):
            out.append(TopKLogitsWarper(top_k=kwargs["top_k"], min_tokens_to_keep=1))
        if kwargs.get("top_p") is not None and kwargs["top_p"] < 1.0:
            out.append(TopPLogitsWarper(top_p=kwargs["top_p"], min_tokens_to_keep=1))
        if kwargs.get("min_p") is not None:
            out.append(MinPLogitsWarper(min_p=kwargs["min_p"], min_tokens_to_keep=1))
        if kwargs.get("typical_p") is not None and kwargs["typical_p"] < 1.0:
            out.append(TypicalLogitsWarper(mass=kwargs["typical_p"], min_tokens_to_keep=1))
    return out


def decode_tokens(model, style: ForwardStyle, prompt_ids: Sequence[int], *, max_new_tokens: int,
                  do_sample: bool, processors, stop_ids: frozenset[int],
                  cancel: threading.Event) -> Iterator[int]:
    """The reply's token ids, one per step, until `max_new_tokens`, a token in
    `stop_ids` (not yielded) or `cancel`. Seed torch's generator before the first
    `next()` for reproducible sampling."""
    import torch

    device = model.device
    prompt_length = len(prompt_ids)
    total = prompt_length + max_new_tokens
    with torch.inference_mode():
        ids = torch.empty((1, total), dtype=torch.long, device=device)
        ids[0, :prompt_length] = torch.tensor(prompt_ids, dtype=torch.long, device=device)
    extra = {"logits_to_keep": 1} if style.logits_to_keep else {}
    cache = None
    step_input = ids[:, :prompt_length]
    length = prompt_length
    for _ in range(max_new_tokens):
        if cancel.is_set():
            return
        # Inference mode per step, not across the yield: it is thread-local state, and
        # the consumer runs its own code (and might close this generator) in between.
        with torch.inference_mode():
            kwargs = {style.cache_name: cache} if cache is not None else {}
            # No attention mask: one sequence has no padding, and an all-ones mask costs a
            # device->host sync per step inside the forward (Transformers checks it is
            # all ones to skip it), which stalls the GPU's queue; without one, the same
            # causal attention runs.
            out = model(input_ids=step_input, use_cache=True, **kwargs, **extra)
            cache = out.get(style.cache_name)
            scores = out.logits[:, -1, :].to(dtype=torch.float32, copy=True)
            del out  # the prompt's logits can be large; keep only this step's row
            scores = processors(ids[:, :length], scores)
            if do_sample:
                picked = torch.multinomial(torch.nn.functional.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            else:
                picked = torch.argmax(scores, dim=-1)
            ids[:, length] = picked
            length += 1
            # A model that returns no cache reads the whole sequence again (correct, slow).
            step_input = ids[:, length - 1:length] if cache is not None else ids[:, :length]
            token = int(picked[0])  # the one device->host copy of the step: a single id
        if token in stop_ids:
            return
        yield token
