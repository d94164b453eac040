"""EXL2 checkpoints through exllamav2 (config, cache, dynamic generator, streaming).

ExLlamaV2 runs on CUDA GPUs only: its kernels are a C++/CUDA extension that it compiles
on first import. So `load` asks PyTorch for a GPU *before* importing exllamav2, and
without one says so in one line instead of starting a compiler that cannot succeed.

A folder is EXL2 when config.json's quantization_config says quant_method "exl2", or
when its safetensors hold EXL2's own tensor names (q_weight, q_invperm, ...), which
conversions without that config entry still have.

The dynamic generator's paged mode needs flash-attn 2.5.7 or later, which is a
separate CUDA build that many machines lack (the lent H200 had none: the load failed
with "Paged attention required Flash Attention 2.5.7 or later"). Without it the
generator runs unpaged (`paged=False`, one sequence at a time, which is all Hearth
asks of it) and the loaded model carries a `load_note` saying so.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from loaders.base import GenerationError, LoadError
from loaders.context_limit import check_fits
from loaders.fields import setting
from loaders.formats import CheckpointFormat
from loaders.hf_common import (
    check_safetensors,
    missing_library,
    model_format,
    one_line,
    read_chat_template,
    read_json,
    require_format,
    weight_files,
)
from loaders.load_progress import LoadProgress, no_progress
from loaders.option_limits import MAX_CONTEXT_TOKENS
from loaders.params import GenerationParams
from loaders.registry import register
from loaders.samplers import SamplerSupport

log = logging.getLogger(__name__)

NO_CUDA = ("ExLlamaV2 needs a CUDA GPU and PyTorch sees none here (torch.cuda.is_available() is False): "
           "load a GGUF of this model with llama.cpp, or a GPTQ or Transformers checkpoint, on the CPU")

# Each field -> the ExLlamaV2Sampler.Settings attribute it sets (sampler_settings), or
# the ExLlamaV2DynamicJob argument (job_arguments). Top-n-sigma and grammars have no
# exllamav2 equivalent.
SAMPLERS = SamplerSupport("ExLlamaV2", {
    "temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
    "typical_p": "typical", "dynatemp_range": "max_temp", "dynatemp_exponent": "temp_exponent",
    "repetition_penalty": "token_repetition_penalty", "repetition_penalty_range": "token_repetition_range",
    "presence_penalty": "token_presence_penalty", "frequency_penalty": "token_frequency_penalty",
    "dry_multiplier": "dry_multiplier", "dry_base": "dry_base", "dry_allowed_length": "dry_allowed_length",
    "dry_penalty_last_n": "dry_range", "xtc_probability": "xtc_probability", "xtc_threshold": "xtc_threshold",
    "mirostat_mode": "mirostat", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta",
    "seed": "seed", "ignore_eos": "stop_conditions",
}, unsupported=frozenset({"top_n_sigma", "grammar"}))

_CACHES = {"fp16": "ExLlamaV2Cache", "q8": "ExLlamaV2Cache_Q8", "q6": "ExLlamaV2Cache_Q6", "q4": "ExLlamaV2Cache_Q4"}


@dataclass(frozen=True)
class ExLlamaV2Options:
    max_seq_len: int = setting(0, "Context length in tokens (0 = the model's own). The KV cache is sized for it.", minimum=0, maximum=MAX_CONTEXT_TOKENS, ui_maximum=131072, step=256)
    cache_mode: str = setting("fp16", "KV cache precision: q8/q6/q4 fit 2-4x longer contexts in the same VRAM.", choices=tuple(_CACHES))


def sampler_settings(exl2_sampler, params: GenerationParams):
    """GenerationParams as exllamav2's ExLlamaV2Sampler.Settings."""
    if params.mirostat_mode == 1:
        raise GenerationError("ExLlamaV2 has Mirostat 2.0 only: choose mirostat_mode 2")
    s = exl2_sampler.Settings()
    greedy = params.temperature == 0
    s.temperature = 1.0 if greedy else params.temperature
    s.top_k = 1 if greedy else params.top_k
    s.top_p = 0.0 if params.top_p >= 1.0 else params.top_p  # 0 = off in exllamav2
    s.min_p = params.min_p
    s.typical = 0.0 if params.typical_p >= 1.0 else params.typical_p
    if params.dynatemp_range > 0 and not greedy:
        s.min_temp = max(0.0, params.temperature - params.dynatemp_range)
        s.max_temp = params.temperature + params.dynatemp_range
        s.temp_exponent = params.dynatemp_exponent
    off = params.repetition_penalty_range == 0
    s.token_repetition_penalty = 1.0 if off else params.repetition_penalty
    s.token_repetition_range = params.repetition_penalty_range
    s.token_presence_penalty = 0.0 if off else params.presence_penalty
    s.token_frequency_penalty = 0.0 if off else params.frequency_penalty
    if params.dry_multiplier > 0 and params.dry_penalty_last_n != 0:
        s.dry_multiplier = params.dry_multiplier
        s.dry_base = params.dry_base
        s.dry_allowed_length = params.dry_allowed_length
        # exllamav2: 0 = whole context; a limited range must exceed its max n-gram (20)
        s.dry_range = 0 if params.dry_penalty_last_n < 0 else max(params.dry_penalty_last_n, s.dry_max_ngram + 1)
    s.xtc_probability = params.xtc_probability
    s.xtc_threshold = params.xtc_threshold
    if params.mirostat_mode == 2:
        s.mirostat, s.mirostat_tau, s.mirostat_eta = True, params.mirostat_tau, params.mirostat_eta
    return s


def job_arguments(params: GenerationParams, eos_token_id: int | None, room: int) -> dict:
    """The ExLlamaV2DynamicJob arguments that come from GenerationParams."""
    return {
        "max_new_tokens": min(params.max_new_tokens, room),
        "seed": params.seed if params.seed >= 0 else int.from_bytes(os.urandom(4), "little"),
        "stop_conditions": [] if params.ignore_eos or eos_token_id is None else [eos_token_id],
    }


def flash_attn_version() -> str | None:
    """The installed flash-attn's version, read without importing it (a CUDA library)."""
    try:
        return importlib.metadata.version("flash-attn")
    except importlib.metadata.PackageNotFoundError:
        return None


def unpaged_note(flash_attn: str | None) -> str:
    found = f"flash-attn {flash_attn} is installed" if flash_attn else "flash-attn is not installed"
    return (f"ExLlamaV2 runs unpaged, one sequence at a time: its paged attention needs flash-attn "
            f"2.5.7 or later, and {found}")


def make_generator(generator_cls, attn, *, model, cache, tokenizer) -> tuple[object, str | None]:
    """exllamav2's dynamic generator, paged where flash-attn allows it, else unpaged;
    and the note to show when it is unpaged. `attn` is exllamav2.attn, whose
    `has_flash_attn_with_paged` is what the paged generator asserts."""
    if getattr(attn, "has_flash_attn_with_paged", False):
        try:
            return generator_cls(model=model, cache=cache, tokenizer=tokenizer), None
        except AssertionError as e:  # e.g. flash-attn turned off in the model's config
            if "flash" not in str(e).lower() and "paged" not in str(e).lower():
                raise
    note = unpaged_note(flash_attn_version())
    log.warning("%s", note)
    # max_batch_size=1: an unpaged generator runs one sequence; its buffers are sized for it.
    return generator_cls(model=model, cache=cache, tokenizer=tokenizer, paged=False, max_batch_size=1), note


@register
class ExLlamaV2Loader:
    name = "ExLlamaV2"
    Options = ExLlamaV2Options
    description = "EXL2-quantized folders via exllamav2 (CUDA GPUs only)."
    formats = (CheckpointFormat.EXL2,)
    samplers = (SAMPLERS,)

    def can_load(self, path: Path) -> bool:
        return model_format(path) in self.formats

    def load(self, path: Path, options: ExLlamaV2Options, progress: LoadProgress = no_progress) -> ExLlamaV2Model:
        folder = require_format(path, self.name, self.formats)
        safetensors, _ = weight_files(folder)
        check_safetensors(safetensors)
        try:
            import torch
        except ImportError:
            raise missing_library("PyTorch (with CUDA) and exllamav2", "exllamav2") from None
        if not torch.cuda.is_available():
            raise LoadError(NO_CUDA)
        try:
            import exllamav2
            import exllamav2.attn
            from exllamav2.generator import ExLlamaV2DynamicGenerator, ExLlamaV2Sampler
        except ImportError:
            raise missing_library("exllamav2", "exllamav2") from None
        try:
            config = exllamav2.ExLlamaV2Config(str(folder))
            config.arch_compat_overrides()
            if options.max_seq_len:
                config.max_seq_len = options.max_seq_len
            model = exllamav2.ExLlamaV2(config)
            cache = getattr(exllamav2, _CACHES[options.cache_mode])(model, max_seq_len=config.max_seq_len, lazy=True)
            model.load_autosplit(cache, callback=lambda done, total: progress(done / max(total, 1), "loading layers"))
            tokenizer = exllamav2.ExLlamaV2Tokenizer(config)
            generator, note = make_generator(ExLlamaV2DynamicGenerator, exllamav2.attn, model=model, cache=cache,
                                             tokenizer=tokenizer)
        except MemoryError:
            raise
        except Exception as e:  # exllamav2 raises asserts, ValueErrors, CUDA errors...
            raise LoadError(f"ExLlamaV2 could not load {folder.name}: {one_line(e)}") from None
        tok_config = folder / "tokenizer_config.json"
        add_bos = bool(read_json(tok_config).get("add_bos_token", False)) if tok_config.is_file() else False
        return ExLlamaV2Model(model, cache, tokenizer, generator, ExLlamaV2Sampler,
                              chat_template=read_chat_template(folder), context_length=config.max_seq_len,
                              add_bos=add_bos, load_note=note)


class ExLlamaV2Model:
    def __init__(self, model, cache, tokenizer, generator, sampler, *, chat_template, context_length, add_bos,
                 load_note: str | None = None):
        self._model, self._cache, self._tokenizer, self._generator = model, cache, tokenizer, generator
        self.load_note = load_note  # what the Model tab's status shows beside "Loaded" (the unpaged fallback)
        self._sampler = sampler
        self._add_bos = add_bos
        self.chat_template = chat_template
        self.context_length = context_length
        self.supported_params = SAMPLERS.supported_params
        self.last_prompt_eval_tokens = 0

    def encode(self, text: str) -> list[int]:
        ids = self._tokenizer.encode(text, add_bos=self._add_bos, encode_special_tokens=True)
        return ids[0].tolist()

    def decode(self, ids: Sequence[int]) -> str:
        import torch

        return self._tokenizer.decode(torch.tensor(list(ids), dtype=torch.long), decode_special_tokens=True)

    def generate(self, prompt_ids: Sequence[int], params: GenerationParams,
                 cancel: threading.Event) -> Iterator[str]:
        import torch
        from exllamav2.generator import ExLlamaV2DynamicJob

        room = check_fits(len(prompt_ids), self.context_length)
        job = ExLlamaV2DynamicJob(
            input_ids=torch.tensor([list(prompt_ids)], dtype=torch.long),
            gen_settings=sampler_settings(self._sampler, params),
            decode_special_tokens=True,
            **job_arguments(params, self._tokenizer.eos_token_id, room),
        )
        generator = self._generator
        generator.enqueue(job)
        first = True
        try:
            while generator.num_remaining_jobs() and not cancel.is_set():
                for result in generator.iterate():
                    if result.get("job") is not job or result.get("stage") != "streaming":
                        continue
                    if first:
                        first = False
                        self.last_prompt_eval_tokens = len(prompt_ids) - int(result.get("cached_tokens", 0))
                    ids = result.get("token_ids")
                    n = int(ids.shape[-1]) if ids is not None else 0
                    text = result.get("text", "")
                    # one piece per token: the text, then '' for any further tokens in this step
                    for i in range(n):
                        yield text if i == 0 else ""
                    if n == 0 and text:
                        yield text
                    if result.get("eos"):
                        return
        finally:
            if generator.num_remaining_jobs():
                generator.cancel(job)

    def unload(self) -> None:
        if self._model is None:
            return
        self._model.unload()
        self._model = self._cache = self._generator = self._tokenizer = None
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()
