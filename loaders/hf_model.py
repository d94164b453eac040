"""A loaded Transformers causal LM behind Hearth's Model contract; the Transformers and
GPTQ loaders both return one (GPTQModel wraps an ordinary Transformers model).

Generation is loaders/hf_decode.py's token loop in the caller's thread: the model's
own forward, KV cache and attention kernels, and Transformers' own logits processors
in `model.generate`'s order, so the same seed gives the same tokens as a plain
`model.generate` (which the bench compares it with), without the helper thread and
streamer that cost 16x on a GPU. `cancel` is checked before every step, so a Stop
takes effect within one token.

torch and transformers are imported inside the functions that use them.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from loaders.base import GenerationError
from loaders.context_limit import check_fits
from loaders.errors import UserError
from loaders.hf_common import one_line
from loaders.hf_decode import ForwardStyle, decode_tokens, logits_processors
from loaders.lora import AdapterError, AdapterSpec
from loaders.lora_peft import PeftAdapters
from loaders.params import GenerationParams
from loaders.samplers import SamplerSupport

# Each field -> the `model.generate` argument it becomes (generation_kwargs), or
# "penalties": the one logits processor Hearth adds so that repetition_penalty_range
# means what it means for llama.cpp, or "torch.manual_seed". DRY, XTC, top-n-sigma,
# dynamic temperature, Mirostat and grammars have no Transformers equivalent.
SAMPLERS = SamplerSupport("Transformers", {
    "temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
    "typical_p": "typical_p", "ignore_eos": "min_new_tokens", "seed": "torch.manual_seed",
    "repetition_penalty": "penalties", "repetition_penalty_range": "penalties",
    "presence_penalty": "penalties", "frequency_penalty": "penalties",
}, unsupported=frozenset({
    "top_n_sigma", "dynatemp_range", "dynatemp_exponent", "dry_multiplier", "dry_base",
    "dry_allowed_length", "dry_penalty_last_n", "xtc_probability", "xtc_threshold",
    "mirostat_mode", "mirostat_tau", "mirostat_eta", "grammar",
}))

# Prompt tokens re-decoded with each new token: enough for a tokenizer that drops a
# word's leading space when it is decoded alone (SentencePiece) to get it right.
_DECODE_CONTEXT = 6


class IncrementalDetokenizer:
    """Text for one token at a time. Decoding each id alone breaks multi-byte
    characters and SentencePiece's leading spaces, so each step decodes a short window
    and returns what it added; '' while a character is still incomplete."""

    def __init__(self, decode: Callable[[list[int]], str], context: Sequence[int] = ()):
        self._decode = decode
        self._ids = list(context)
        self._prefix = 0
        self._read = len(self._ids)

    def push(self, token: int) -> str:
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """What is still held back at the end (an incomplete character, as U+FFFD)."""
        if self._read == len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix:self._read])
        return self._decode(self._ids[self._prefix:])[len(before):]


def generation_kwargs(params: GenerationParams, max_new_tokens: int) -> dict[str, Any]:
    """GenerationParams as `model.generate` keyword arguments, from which
    hf_decode.logits_processors builds the processors generate would. Every sampler is
    given explicitly ("off" values included), so that passed to `model.generate` a
    model's generation_config.json could not slip its own defaults in underneath."""
    kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "repetition_penalty": 1.0}
    if params.ignore_eos:
        kw["min_new_tokens"] = max_new_tokens  # Transformers masks EOS until then
    if params.temperature == 0:
        kw.update(do_sample=False, temperature=None, top_k=None, top_p=None, min_p=None, typical_p=None)
    else:
        kw.update(do_sample=True, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                  min_p=params.min_p if params.min_p > 0 else None, typical_p=params.typical_p)
    return kw


@dataclass(frozen=True)
class Penalties:
    last_n: int  # -1 = the whole context
    repeat: float
    frequency: float
    presence: float


def penalties(params: GenerationParams) -> Penalties | None:
    """The llama.cpp-style penalties to apply, or None when they are all off."""
    active = (params.repetition_penalty != 1.0 or params.presence_penalty != 0.0
              or params.frequency_penalty != 0.0)
    if not active or params.repetition_penalty_range == 0:
        return None
    return Penalties(params.repetition_penalty_range, params.repetition_penalty,
                     params.frequency_penalty, params.presence_penalty)


def penalties_processor(params: GenerationParams):
    """The penalties over the last `repetition_penalty_range` tokens, as a logits
    processor, or None."""
    pen = penalties(params)
    if pen is None:
        return None
    import torch
    from transformers import LogitsProcessor

    class RecentTokenPenalties(LogitsProcessor):
        def __call__(self, input_ids, scores):
            window = input_ids[:, -pen.last_n:] if pen.last_n > 0 else input_ids
            counts = torch.zeros_like(scores).scatter_add_(1, window, torch.ones_like(window, dtype=scores.dtype))
            seen = counts > 0
            if pen.repeat != 1.0:
                scores = torch.where(seen, torch.where(scores < 0, scores * pen.repeat, scores / pen.repeat), scores)
            return scores - counts * pen.frequency - seen.to(scores.dtype) * pen.presence

    return RecentTokenPenalties()


class HFModel:
    """Hearth's Model over a Transformers model and its tokenizer."""

    def __init__(self, model, tokenizer, *, chat_template: str | None, context_length: int,
                 on_unload: Callable[[], None] | None = None, lora: PeftAdapters | None = None):
        self._model = model
        self._lora = lora  # the loader's LoRA adapters, where it takes them
        self._tokenizer = tokenizer
        self.chat_template = chat_template
        # What picks a chat template for a folder that ships none: config.json's
        # model_type and the tokenizer's added tokens (<|im_start|>, <|eot_id|> ...).
        self.architecture = getattr(model.config, "model_type", None)
        self.special_tokens = frozenset(tokenizer.get_added_vocab())
        self.context_length = context_length
        self.supported_params = SAMPLERS.supported_params
        self.last_prompt_eval_tokens = 0
        self._on_unload = on_unload
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos = frozenset(eos if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else []))

    @property
    def hf_model(self):
        """The Transformers model itself (for the benchmark's raw `generate`)."""
        return self._model

    @property
    def device(self):
        return self._model.device

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=True))

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def generate(self, prompt_ids: Sequence[int], params: GenerationParams,
                 cancel: threading.Event) -> Iterator[str]:
        import torch

        prompt_ids = list(prompt_ids)
        if not prompt_ids:  # this tokenizer adds no BOS: there is nothing to continue
            raise GenerationError("the prompt is empty")
        room = check_fits(len(prompt_ids), self.context_length)
        self.last_prompt_eval_tokens = len(prompt_ids)  # no KV reuse: the whole prompt is read each time
        max_new = min(params.max_new_tokens, room)
        if max_new <= 0:
            return
        kwargs = generation_kwargs(params, max_new)
        model = self._model
        processors = logits_processors(kwargs, penalties_processor(params), self._eos, len(prompt_ids), model.device)
        seed = params.seed if params.seed >= 0 else int.from_bytes(os.urandom(4), "little")
        torch.manual_seed(seed)
        tokens = decode_tokens(model, ForwardStyle.of(model), prompt_ids, max_new_tokens=max_new,
                               do_sample=kwargs["do_sample"], processors=processors,
                               stop_ids=frozenset() if params.ignore_eos else self._eos, cancel=cancel)
        text = IncrementalDetokenizer(self.decode, prompt_ids[-_DECODE_CONTEXT:])
        try:
            for token in tokens:
                yield text.push(token)
        except UserError:
            raise
        except Exception as e:  # torch and Transformers raise many kinds; the user needs one line
            raise GenerationError(f"generation failed: {one_line(e)}") from e
        finally:
            tokens.close()
        tail = text.flush()
        if tail:
            yield tail

    def set_adapters(self, adapters: Sequence[AdapterSpec]) -> None:
        """Apply exactly these LoRA adapters (PEFT), without reloading the model."""
        if self._lora is None:
            raise AdapterError("this model's loader applies no LoRA adapters")
        self._lora.apply(adapters)
        self._model = self._lora.model

    def unload(self) -> None:
        if self._model is None:
            return
        self._model = None
        if self._lora is not None:
            self._lora.close()
            self._lora = None
        self._tokenizer = None
        if self._on_unload is not None:
            self._on_unload()
        free_torch_memory()


def free_torch_memory() -> None:
    import gc

    gc.collect()
    _trim_malloc()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _trim_malloc() -> None:
    """glibc keeps freed heap pages for reuse, so weights that PyTorch allocated in
    pieces below malloc's mmap threshold (a bfloat16 copy, say) stay in RAM after
    unloading; malloc_trim hands them back to the OS."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, ...)
        pass


def set_cpu_threads(torch, wanted: int) -> int:
    """PyTorch's CPU threads: `wanted`, or all CPUs but one (0). Why not all: with every
    core in one OpenMP team, a step waits for the slowest thread, and the UI, the
    browser and the OS keep taking one (measured here on 2 busy cores: 20 tokens took
    1.3-1.8 s with 1 thread and 4.9-7.7 s with 2), the same reason llama.cpp's loader
    leaves a core free."""
    if wanted <= 0:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:
            cpus = os.cpu_count() or 1
        wanted = max(1, cpus - 1)
    torch.set_num_threads(wanted)
    return wanted
