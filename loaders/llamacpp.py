"""GGUF models through llama-cpp-python, in process.

`llama_cpp` is imported inside `load`, never at module import, so the registry and
`hearth --help` do not pay for it.
"""
from __future__ import annotations

import codecs
import dataclasses
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from loaders import cpu_repack
from loaders.base import GenerationError, LoadError
from loaders.context_limit import check_fits
from loaders.fields import SettingError, setting
from loaders.formats import CheckpointFormat
from loaders.gguf import KV_CACHE_TYPES, checked_header, kv_type_is_quantized, read_special_tokens
from loaders.gguf_embedder import ENCODER_ARCHITECTURES, EmbeddingModel
from loaders.grammar_sampler import GrammarCheckedSampler
from loaders.hf_common import model_format, wrong_format
from loaders.kv_reuse import apply_shift, plan_shift
from loaders.llamacpp_batch import BatchedDecoder, BatchReply, context_params
from loaders.load_progress import LoadProgress, llama_callback, no_progress
from loaders.logprobs import TokenLogprob, describe_token, last_logits, prompt_logprobs
from loaders.lora import GGUF_LORA_HELP, AdapterSpec, lora_setting, parse_entries
from loaders.lora_llamacpp import LlamaCppAdapters, check_gguf_adapters
from loaders.option_limits import MAX_CONTEXT_TOKENS, MAX_THREADS, usable_cpus
from loaders.params import GenerationParams
from loaders.registry import register
from loaders.samplers import SamplerSupport
from loaders.speculative import SpeculationCounts, check_choice, make_drafter, resolve_draft_path, speculative_tokens

# llama-cpp-python allocates an n_batch x vocabulary float32 score array when it loads
# (n_batch 2**30 asked numpy for 192 TiB with SmolLM2's 49,152 tokens); 16384 rows of
# the largest vocabularies (256k) are 16 GiB of address space, and batches above a
# few thousand tokens gain nothing on a CPU.
MAX_BATCH = 16384
# The deepest models have about 130 layers (Llama 3.1 405B: 126); llama.cpp offloads
# every layer for any count above the model's own.
MAX_GPU_LAYERS = 1024
# 1 TiB: as much RAM or disk as anyone gives a cache; a RAM cache is also checked
# against this machine's memory when the model loads.
MAX_PROMPT_CACHE_MB = 1 << 20
# Drafts past ~16 tokens are rarely all kept; 256 is a bound, not advice.
MAX_DRAFT = 256
SPECULATION_GROUP = "speculative decoding"
# Trained RoPE bases run from 10,000 (Llama 2) to 1e6-1e7 (Qwen, Gemma, long-context
# fine-tunes); 1e10 leaves room and refuses typos by orders of magnitude.
MAX_ROPE_FREQ_BASE = 1e10
# llama.cpp's rope_scaling_type values (enum llama_rope_scaling_type); "model" is -1:
# what the GGUF header says.
ROPE_SCALING_TYPES = {"model": -1, "none": 0, "linear": 1, "yarn": 2}
KV_GROUP = "KV cache"
# llama.cpp's LLAMA_MAX_SEQ is 256; past a few dozen replies a CPU gains nothing.
MAX_PARALLEL = 64
ROPE_GROUP = "RoPE scaling (past the trained context)"


# Why all CPUs but one for generation: measured on 2 cores with a browser streaming
# the reply, 1 thread gave 66 tok/s and 2 threads 49 (the threads spin at barriers
# while the browser and server hold a core). Prompt processing runs before any
# streaming starts, so it takes every CPU.
def _default_threads() -> int:
    return max(1, usable_cpus() - 1)


# What parallel=0 ("auto") becomes: the composition root raises the floor to 2 when
# the server listens on the network (several people may ask at once).
_auto_parallel_floor = 1


def serve_many_clients(listening: bool) -> None:
    """Tell the loader whether the server takes requests from other machines, which
    makes parallel=0 serve at least 2 replies at once."""
    global _auto_parallel_floor
    _auto_parallel_floor = 2 if listening else 1


def resolve_parallel(options: LlamaCppOptions) -> int:
    """How many replies decode together. Auto: 1 on a localhost server (one person:
    the single-sequence path is the fastest for one stream), else one per 2 CPUs,
    2 to 4, as llama-server's auto picks 4; always 1 where the batched path cannot
    serve (speculative decoding, the prompt cache)."""
    if options.parallel:
        return options.parallel
    if options.draft_model or options.prompt_lookup_ngram or options.prompt_cache != "off":
        return 1
    if _auto_parallel_floor < 2:
        return 1
    return max(_auto_parallel_floor, min(4, usable_cpus() // 2))


@dataclass(frozen=True)
class LlamaCppOptions:
    n_ctx: int = setting(4096, "Context length in tokens (0 = the model's own).", minimum=0, maximum=MAX_CONTEXT_TOKENS, ui_maximum=131072, step=256)
    context_shift: bool = setting(True, "Context shift: when a chat outgrows the context, drop its oldest turns inside the KV cache and go on without re-reading the kept history. The kept keys are moved by RoPE rotation, so a reply may differ slightly from one with the whole prompt re-read (the same chat still gives the same reply). Off = re-read everything after the system prompt.")
    n_threads: int = setting(0, "CPU threads for generation (0 = all CPUs but one, which the UI and browser need).", minimum=0, maximum=MAX_THREADS, ui_maximum=256, step=1)
    n_threads_batch: int = setting(0, "CPU threads for prompt processing (0 = all CPUs).", minimum=0, maximum=MAX_THREADS, ui_maximum=256, step=1)
    n_batch: int = setting(512, "Prompt tokens evaluated per batch.", minimum=1, maximum=MAX_BATCH, ui_maximum=8192, step=1)
    n_gpu_layers: int = setting(0, "Layers to offload to the GPU (-1 = all; needs a GPU build).", minimum=-1, maximum=MAX_GPU_LAYERS, ui_maximum=256, step=1)
    flash_attn: bool = setting(False, "Flash attention (faster, less memory for long contexts where supported).")
    use_mmap: bool = setting(True, "Memory-map the file (fast loads; pages are shared with the OS cache).")
    use_mlock: bool = setting(False, "Lock the model in RAM so the OS never swaps it out.")
    prompt_cache: str = setting("off", "Keep KV states of earlier prompts so switching between chats skips re-reading them.", choices=("off", "ram", "disk"))
    prompt_cache_mb: int = setting(1024, "Size of the prompt cache in MiB.", minimum=1, maximum=MAX_PROMPT_CACHE_MB, ui_maximum=65536, step=64)
    cpu_repack: str = setting("auto", "Repacked CPU weight layouts (AMX/AVX kernels): auto tests once that they work on this CPU.", choices=("auto", "on", "off"), advanced=True)
    draft_model: str = setting("", "Speculative decoding: a smaller GGUF with the same vocabulary (a path, or a file name next to the model) drafts tokens this model checks in batches (empty = none).", max_length=4096, group=SPECULATION_GROUP)
    draft_max: int = setting(8, "Most tokens the draft model proposes per step.", minimum=1, maximum=MAX_DRAFT, ui_maximum=32, step=1, advanced=True, group=SPECULATION_GROUP)
    draft_n_ctx: int = setting(0, "The draft model's context length (0 = n_ctx); past it, drafting pauses.", minimum=0, maximum=MAX_CONTEXT_TOKENS, ui_maximum=131072, step=256, advanced=True, group=SPECULATION_GROUP)
    draft_threads: int = setting(0, "CPU threads for the draft model (0 = as for this model).", minimum=0, maximum=MAX_THREADS, ui_maximum=256, step=1, advanced=True, group=SPECULATION_GROUP)
    prompt_lookup_ngram: int = setting(0, "Prompt lookup (speculation without a draft model, for replies that repeat the prompt, such as edits): the longest n-gram matched to find a continuation (0 = off).", minimum=0, maximum=16, step=1, group=SPECULATION_GROUP)
    prompt_lookup_max: int = setting(10, "Most tokens prompt lookup proposes per step.", minimum=1, maximum=MAX_DRAFT, ui_maximum=64, step=1, advanced=True, group=SPECULATION_GROUP)
    type_k: str = setting("f16", "KV cache type for keys: q8_0 halves the KV memory of f16 with little quality loss; q4_0 quarters it and costs more quality.", choices=tuple(KV_CACHE_TYPES), group=KV_GROUP)
    type_v: str = setting("f16", "KV cache type for values: a quantized V cache (q8_0, q4_0, ...) needs flash_attn on.", choices=tuple(KV_CACHE_TYPES), group=KV_GROUP)
    rope_scaling: str = setting("model", "RoPE scaling to run past the trained context: model = as the GGUF says; linear needs a model fine-tuned for it; yarn works on most models but quality still drops as the context grows.", choices=tuple(ROPE_SCALING_TYPES), advanced=True, group=ROPE_GROUP)
    rope_freq_scale: float = setting(0.0, "RoPE frequency scale (0 = the model's own): trained context / n_ctx, e.g. 0.5 for twice the trained context. Needs rope_scaling linear or yarn.", minimum=0.0, maximum=1.0, step=0.05, advanced=True, group=ROPE_GROUP)
    rope_freq_base: float = setting(0.0, "RoPE base frequency (0 = the model's own). Raising it (NTK-aware scaling) stretches the context without fine-tuning, at a quality cost.", minimum=0.0, maximum=MAX_ROPE_FREQ_BASE, advanced=True, group=ROPE_GROUP)
    yarn_orig_ctx: int = setting(0, "YaRN: the context the model was trained at (0 = from the GGUF).", minimum=0, maximum=MAX_CONTEXT_TOKENS, ui_maximum=131072, step=256, advanced=True, group=ROPE_GROUP)
    yarn_ext_factor: float = setting(-1.0, "YaRN extrapolation mix (negative = 1 with yarn, else 0; 0 turns YaRN's interpolation ramp off).", minimum=-1.0, maximum=1.0, step=0.05, advanced=True, group=ROPE_GROUP)
    lora: tuple[str, ...] = lora_setting(GGUF_LORA_HELP)
    parallel: int = setting(0, "Replies decoded together from this one model (continuous batching, as llama-server's --parallel; each reply gets its own n_ctx of KV cache). 0 = auto: 1 on localhost, 2-4 with --listen. A reply decoded beside others may drift from the same reply decoded alone after some tokens (batched kernels round differently; see docs/BENCHMARKS.md). Above 1: no speculative decoding, prompt cache or prompt logprobs (echo).", minimum=0, maximum=MAX_PARALLEL, ui_maximum=16, step=1)

    def __post_init__(self) -> None:
        # Combinations llama.cpp refuses or silently ignores, refused here in one line
        # before the loaded model is unloaded (single values are checked by setting()).
        if self.type_v in KV_CACHE_TYPES and kv_type_is_quantized(self.type_v) and not self.flash_attn:
            raise SettingError(f"type_v={self.type_v} needs flash_attn on (llama.cpp keeps a quantized V cache "
                               "only with flash attention); turn flash_attn on or use type_v=f16")
        if self.parallel > 1:
            for name, on in (("draft_model", bool(self.draft_model)), ("prompt_lookup_ngram", self.prompt_lookup_ngram > 0),
                             ("prompt_cache", self.prompt_cache != "off")):
                if on:
                    raise SettingError(f"{name} works only with parallel=1 (got parallel={self.parallel}); "
                                       f"turn {name} off or set parallel to 1")
        if self.rope_scaling == "none" and self.rope_freq_scale not in (0.0, 1.0):
            raise SettingError(f"rope_freq_scale={self.rope_freq_scale:g} does nothing with rope_scaling=none; "
                               "choose rope_scaling linear or yarn")
        if self.rope_scaling in ("none", "linear"):
            for name, unset in (("yarn_orig_ctx", 0), ("yarn_ext_factor", -1.0)):
                if getattr(self, name) != unset:
                    raise SettingError(f"{name} applies only with rope_scaling=yarn (got rope_scaling={self.rope_scaling})")


# Hearth builds llama.cpp's sampler chain itself (sampler_chain below), so this backend
# honours the whole set: each field -> the LlamaSampler step that reads it ("grammar" is
# llama_sampler_init_grammar, applied after sampling by grammar_sampler.py; "generate" is
# the token loop in LlamaCppModel.generate).
SAMPLERS = SamplerSupport("llama.cpp", {
    "ignore_eos": "generate",
    "temperature": "add_temp", "dynatemp_range": "add_temp_ext", "dynatemp_exponent": "add_temp_ext",
    "top_k": "add_top_k", "top_p": "add_top_p", "min_p": "add_min_p", "typical_p": "add_typical",
    "top_n_sigma": "add_top_n_sigma",
    "repetition_penalty": "add_penalties", "repetition_penalty_range": "add_penalties",
    "presence_penalty": "add_penalties", "frequency_penalty": "add_penalties",
    "dry_multiplier": "add_dry", "dry_base": "add_dry", "dry_allowed_length": "add_dry",
    "dry_penalty_last_n": "add_dry",
    "xtc_probability": "add_xtc", "xtc_threshold": "add_xtc",
    "mirostat_mode": "add_mirostat", "mirostat_tau": "add_mirostat", "mirostat_eta": "add_mirostat",
    "seed": "add_dist",
    "grammar": "grammar",
})
DRY_SEQUENCE_BREAKERS = ("\n", ":", '"', "*")


def sampler_chain(p: GenerationParams, n_ctx: int, n_vocab: int) -> list[tuple[str, tuple]]:
    """llama.cpp's sampler chain for `p`, as (LlamaSampler method, arguments) steps in
    order; `p.seed` must already be a real seed (not -1)."""
    steps: list[tuple[str, tuple]] = []
    penalty_n = n_ctx if p.repetition_penalty_range < 0 else p.repetition_penalty_range
    steps.append(("add_penalties", (n_vocab, penalty_n, p.repetition_penalty, p.frequency_penalty,
                                    p.presence_penalty)))
    if p.dry_multiplier > 0:
        steps.append(("add_dry", (p.dry_multiplier, p.dry_base, p.dry_allowed_length, p.dry_penalty_last_n,
                                  list(DRY_SEQUENCE_BREAKERS))))
    if p.grammar:
        steps.append(("grammar", (p.grammar,)))
    if p.temperature == 0:
        steps.append(("add_greedy", ()))
    elif p.mirostat_mode == 1:
        steps.append(("add_temp", (p.temperature,)))
        steps.append(("add_mirostat", (n_vocab, p.seed, p.mirostat_tau, p.mirostat_eta, 100)))
    elif p.mirostat_mode == 2:
        steps.append(("add_temp", (p.temperature,)))
        steps.append(("add_mirostat_v2", (p.seed, p.mirostat_tau, p.mirostat_eta)))
    else:
        # llama.cpp's default order: penalties, dry, top-n-sigma, top-k, typical, top-p, min-p, xtc, temperature
        if p.top_n_sigma > 0:
            steps.append(("add_top_n_sigma", (p.top_n_sigma,)))
        if p.top_k > 0:
            steps.append(("add_top_k", (p.top_k,)))
        steps.append(("add_typical", (p.typical_p, 1)))
        steps.append(("add_top_p", (p.top_p, 1)))
        steps.append(("add_min_p", (p.min_p, 1)))
        if p.xtc_probability > 0:
            steps.append(("add_xtc", (p.xtc_probability, p.xtc_threshold, 1, p.seed)))
        if p.dynatemp_range > 0:
            steps.append(("add_temp_ext", (p.temperature, p.dynatemp_range, p.dynatemp_exponent)))
        else:
            steps.append(("add_temp", (p.temperature,)))
        steps.append(("add_dist", (p.seed,)))
    return steps


@register
class LlamaCppLoader:
    name = "llama.cpp"
    Options = LlamaCppOptions
    description = "GGUF files on CPU (and GPU layers with a CUDA/Metal build), via llama-cpp-python."
    formats = (CheckpointFormat.GGUF,)
    samplers = (SAMPLERS,)

    def can_load(self, path: Path) -> bool:
        return model_format(path) in self.formats

    def load(self, path: Path, options: LlamaCppOptions, progress: LoadProgress = no_progress) -> LlamaCppModel:
        path = _gguf_file(Path(path))
        check_choice(options)
        try:
            draft_path = _gguf_file(resolve_draft_path(options.draft_model, path)) if options.draft_model else None
        except LoadError as e:
            raise LoadError(f"draft_model {e}") from None
        header = checked_header(path, LoadError)
        # A header may claim any context; past MAX_CONTEXT_TOKENS none fits anyway.
        n_ctx = options.n_ctx or min(header.context_length or 4096, MAX_CONTEXT_TOKENS)
        if header.architecture in ENCODER_ARCHITECTURES:  # BERT and kin: texts into vectors, no text out
            return EmbeddingModel.load(path, header.architecture, min(n_ctx, header.context_length or n_ctx),
                                       options.n_threads_batch or usable_cpus())
        parallel = resolve_parallel(options)
        # Every sequence gets a KV stream of n_ctx cells (llama-server's --parallel N
        # without --kv-unified), so one reply never runs out of room because of another.
        _check_memory(path, header, n_ctx, options, parallel)
        _check_prompt_cache(options)
        adapters = parse_entries(options.lora)
        check_gguf_adapters(adapters, header)  # before the model is read
        try:
            import llama_cpp
        except ImportError:
            raise LoadError("llama-cpp-python is not installed: run ./start.sh, or pip install llama-cpp-python") from None
        repack = cpu_repack.decide(options.cpu_repack, path, header.quantization)
        threads = options.n_threads or _default_threads()
        try:
            on_progress = llama_callback(progress)  # referenced until the constructor returns
            with cpu_repack.model_params(use_extra_bufts=repack, progress_callback=on_progress), \
                    context_params(n_seq_max=parallel, kv_unified=False):
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx * parallel,
                    n_threads=threads,
                    n_threads_batch=options.n_threads_batch or usable_cpus(),
                    n_batch=options.n_batch,
                    n_ubatch=options.n_batch,
                    n_gpu_layers=options.n_gpu_layers,
                    flash_attn=options.flash_attn,
                    use_mmap=options.use_mmap,
                    use_mlock=options.use_mlock,
                    type_k=KV_CACHE_TYPES[options.type_k],
                    type_v=KV_CACHE_TYPES[options.type_v],
                    **_rope_arguments(options),
                    verbose=False,
                )
        except (ValueError, RuntimeError) as e:
            raise _load_error(path, options, e) from None
        if options.prompt_cache == "ram":
            llm.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=options.prompt_cache_mb << 20))
        elif options.prompt_cache == "disk":
            cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth" / "prompt-cache"
            llm.set_cache(llama_cpp.LlamaDiskCache(cache_dir=str(cache_dir), capacity_bytes=options.prompt_cache_mb << 20))
        try:
            drafter = make_drafter(options, llm, draft_path, threads, options.n_threads_batch or usable_cpus())
        except BaseException:
            llm.close()
            raise
        model = LlamaCppModel(llm, header.chat_template, n_ctx, drafter, context_shift=options.context_shift,
                              parallel=parallel)
        # What picks a chat template for a file that ships none (webui/chat/template_fallback.py).
        model.architecture, model.special_tokens = header.architecture, read_special_tokens(path)
        model.adapters = LlamaCppAdapters(llm, header)
        try:
            model.set_adapters(adapters)
        except BaseException:
            model.unload()
            raise
        return model


def _gguf_file(path: Path) -> Path:
    """The GGUF file at `path`: the file itself, or the one .gguf in a folder.

    Anything else gets one line, the same whether or not the path exists and
    whatever it holds: a load request may name any path on this machine, and the
    answer must not tell which exist or what their first bytes are."""
    not_gguf = LoadError(f"{path.name or path}: no such file, or not a GGUF file")
    if path.is_dir():
        ggufs = sorted(p for p in path.glob("*.gguf") if p.is_file())
        if len(ggufs) > 1:
            raise LoadError(f"{path.name} holds {len(ggufs)} .gguf files; choose one of them")
        if ggufs:
            return ggufs[0]
        other = model_format(path)
        if other is not None:  # a Hugging Face model folder: say which loader opens it
            raise LoadError(wrong_format(path.name, other, CheckpointFormat.GGUF))
        raise not_gguf
    # Not a regular file (missing, a pipe, a device): never opened, since reading a
    # pipe would block. model_format reads only the first 4 bytes (b"GGUF").
    found = model_format(path) if path.is_file() else None
    if found is CheckpointFormat.GGUF:
        return path
    if found is not None:  # a weight file in a Hugging Face model folder
        raise LoadError(wrong_format(path.name, found, CheckpointFormat.GGUF))
    raise not_gguf


def _rope_arguments(options: LlamaCppOptions) -> dict:
    """llama_cpp.Llama's RoPE arguments; 0 and negative values mean "the model's own"
    there too. YaRN's beta and attention factors keep llama-cpp-python's defaults:
    with YaRN on, llama.cpp recomputes the attention factor itself."""
    return dict(rope_scaling_type=ROPE_SCALING_TYPES[options.rope_scaling],
                rope_freq_base=options.rope_freq_base, rope_freq_scale=options.rope_freq_scale,
                yarn_orig_ctx=options.yarn_orig_ctx, yarn_ext_factor=options.yarn_ext_factor)


def _load_error(path: Path, options: LlamaCppOptions, error: Exception) -> LoadError:
    """llama.cpp says only "Failed to create llama_context" (the reason goes to its log);
    with a non-default KV type that is nearly always the type, so name it."""
    if "llama_context" in str(error) and (options.type_k, options.type_v) != ("f16", "f16"):
        return LoadError(f"llama.cpp cannot use type_k={options.type_k}, type_v={options.type_v} with "
                         f"{path.name} in this build; try f16 or q8_0")
    return LoadError(f"llama.cpp could not load {path.name}: {error}")


def _check_prompt_cache(options: LlamaCppOptions) -> None:
    """A RAM cache fills up to its size over many chats: refuse one larger than RAM."""
    if options.prompt_cache != "ram":
        return
    try:
        import psutil
    except ImportError:
        return
    total = psutil.virtual_memory().total
    if options.prompt_cache_mb << 20 > total:
        raise LoadError(f"prompt_cache_mb={options.prompt_cache_mb} is more than this machine's "
                        f"{total >> 20} MiB of RAM; choose a smaller RAM cache, or the disk cache")


def _check_memory(path: Path, header, n_ctx: int, options: LlamaCppOptions, sequences: int = 1) -> None:
    """Refuse, before llama.cpp allocates, a context whose KV cache (n_ctx cells for
    each of `sequences` replies) cannot fit."""
    kv = header.kv_cache_bytes(n_ctx * sequences, options.type_k, options.type_v)
    if kv is None:
        return
    try:
        import psutil
        available = psutil.virtual_memory().available
    except ImportError:
        return
    # GPU-offloaded layers keep their KV on the GPU; only the CPU share counts here.
    n_layers = header.n_layers or 1
    on_gpu = n_layers if options.n_gpu_layers < 0 else min(options.n_gpu_layers, n_layers)
    kv_cpu = kv * (n_layers - on_gpu) / n_layers
    weights = path.stat().st_size * (n_layers - on_gpu) / n_layers
    if kv_cpu + weights > available:
        gib = 1 << 30
        fit = int(n_ctx * max(available - weights, 0) / kv_cpu) // 256 * 256 if kv_cpu else 0
        each = f" for each of parallel={sequences} replies" if sequences > 1 else ""
        raise LoadError(
            f"n_ctx={n_ctx}{each} needs {kv_cpu / gib:.1f} GiB of KV cache plus {weights / gib:.1f} GiB of weights, "
            f"but only {available / gib:.1f} GiB of RAM is free; try n_ctx={max(fit, 0)} or less"
        )


class LlamaCppModel:
    adapters: LlamaCppAdapters | None = None  # set by the loader

    def __init__(self, llm, chat_template: str | None, n_ctx: int, drafter=None, context_shift: bool = True,
                 parallel: int = 1):
        import llama_cpp

        self._llm = llm
        self.context_shift = context_shift
        self._drafter = drafter
        # Drafted and accepted tokens of the last reply (None without speculation).
        self.last_speculation: SpeculationCounts | None = None
        self.context_length = n_ctx  # per reply, also with parallel > 1
        self.chat_template = chat_template
        self.supported_params = SAMPLERS.supported_params
        # Replies decoded at once; the generation engine runs this many side by side.
        self.concurrency = parallel
        # Concurrent replies each read their own prompt count and logprobs; a reader
        # in another thread gets the latest reply's count.
        self._per_reply = threading.local()
        self._latest_prompt_eval_tokens = 0
        self._params: GenerationParams | None = None
        # Hearth builds the sampler chain itself: llama-cpp-python's own skips XTC,
        # DRY, top-n-sigma and dynamic temperature.
        llm._init_sampler = self._make_sampler
        vocab = llm._model.vocab
        self._decoder = None if parallel < 2 else BatchedDecoder(
            llm, parallel, llm.n_batch, context_shift, lambda token: llama_cpp.llama_vocab_is_eog(vocab, token))

    @property
    def last_prompt_eval_tokens(self) -> int:
        """Prompt tokens the latest reply evaluated; with replies decoding side by side
        (parallel > 1), the latest one started in this thread (any thread's latest where
        this thread started none). One at a time, any thread's latest: a value kept per
        thread would go stale in a thread that once generated and now only reads."""
        if self._decoder is None:
            return self._latest_prompt_eval_tokens
        return getattr(self._per_reply, "prompt_eval_tokens", self._latest_prompt_eval_tokens)

    @last_prompt_eval_tokens.setter
    def last_prompt_eval_tokens(self, count: int) -> None:
        self._per_reply.prompt_eval_tokens = self._latest_prompt_eval_tokens = count

    def encode(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def decode(self, ids: Sequence[int]) -> str:
        return self._llm.detokenize(list(ids), special=True).decode("utf-8", errors="replace")

    def _make_sampler(self, params: GenerationParams | None = None, **_ignored):
        import llama_cpp
        from llama_cpp._internals import LlamaSampler

        llm = self._llm
        s = LlamaSampler()
        grammar = None
        for method, args in sampler_chain(params or self._params, self.context_length, llm.n_vocab()):
            if method == "grammar":
                # Not LlamaSampler.add_grammar: it adds llama.cpp's result unchecked, and a
                # grammar that fails to parse comes back NULL and crashes the process.
                sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, args[0].encode("utf-8"), b"root")
                if not sampler:
                    raise GenerationError("the grammar does not parse (GBNF with a 'root' rule expected)")
                # Kept out of the chain: checked against the sampled token only (grammar_sampler.py).
                grammar = LlamaSampler()
                llama_cpp.llama_sampler_chain_add(grammar.sampler, sampler)
            elif method == "add_dry":
                s.add_dry(llm._model, *args)
            else:
                getattr(s, method)(*args)
        return s if grammar is None else GrammarCheckedSampler(s, grammar, llm.n_vocab())

    def generate(self, prompt_ids: Sequence[int], params: GenerationParams,
                 cancel: threading.Event) -> Iterator[str]:
        import llama_cpp

        llm = self._llm
        if not prompt_ids:
            raise GenerationError("the prompt is empty")
        room = check_fits(len(prompt_ids), self.context_length)
        # One seed for the whole reply, even if llama-cpp-python rebuilds the sampler.
        seed = params.seed if params.seed >= 0 else int.from_bytes(os.urandom(4), "little")
        params = dataclasses.replace(params, seed=seed) if seed != params.seed else params
        if self._decoder is not None:
            yield from self._generate_batched(list(prompt_ids), params, cancel, min(params.max_new_tokens, room))
            return
        self._params = params
        if llm.cache is not None:
            self._restore_from_cache(prompt_ids)
        self.last_prompt_eval_tokens = self._prefill(list(prompt_ids))
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        limit = min(params.max_new_tokens, room)
        produced: list[int] = []
        if self._drafter is None:
            stream = llm.generate(prompt_ids, reset=True)
        else:
            self.last_speculation = SpeculationCounts(self._drafter.method)
            stream = speculative_tokens(llm, prompt_ids, self._drafter, self.last_speculation, limit)
        try:
            for token in stream:
                if not params.ignore_eos and llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                produced.append(token)
                self._last_token = token  # what token_logprobs describes while this yield waits
                yield decoder.decode(llm.detokenize([token]))
                if len(produced) >= limit or cancel.is_set():
                    break
        finally:
            # No yield in here: a consumer that closes this generator (a stop string,
            # a cancel) would get "generator ignored GeneratorExit". Bytes of a
            # character cut off by the end of generation are dropped, not shown as U+FFFD.
            stream.close()
            if llm.cache is not None:
                llm.cache[list(prompt_ids) + produced] = llm.save_state()

    def _generate_batched(self, prompt_ids: list[int], params: GenerationParams, cancel: threading.Event,
                          limit: int) -> Iterator[str]:
        """One reply through the batched decoder (llamacpp_batch.py): this thread only
        waits for its tokens and turns them into text."""
        llm = self._llm
        if limit <= 0:
            self.last_prompt_eval_tokens = 0
            return
        sampler = self._make_sampler(params)
        reply = self._decoder.submit(BatchReply(prompt_ids, sampler, limit, not params.ignore_eos))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        local = self._per_reply
        try:
            first = True
            while (token := reply.next_token()) is not None:
                if first:
                    self.last_prompt_eval_tokens = reply.prompt_eval_tokens
                    first = False
                local.token, local.logits = token, reply.logits
                yield decoder.decode(llm.detokenize([token]))
                if cancel.is_set():
                    break
        finally:
            # The slot is free at the decoder's next step; the sampler is ours to close
            # once the decoder can no longer sample with it (it has ended the reply or
            # will skip it as closed).
            self._decoder.release(reply)
            local.logits = None

    def token_logprobs(self, top: int) -> TokenLogprob:
        """The token `generate` has just yielded, with the `top` likeliest tokens at its
        position; valid only until the generator resumes (llama.cpp still holds the
        logits the sampler read; the batched path keeps a copy per reply)."""
        if self._drafter is not None:
            raise GenerationError("logprobs are not available with speculative decoding on; "
                                  "load the model without a draft model or prompt lookup")
        if self._decoder is not None:
            return describe_token(self._llm, self._per_reply.token, self._per_reply.logits, top)
        return describe_token(self._llm, self._last_token, last_logits(self._llm), top)

    def prompt_logprobs(self, ids: Sequence[int], top: int) -> list[TokenLogprob]:
        """Each prompt token's log-probability given those before it (the first's is
        None); the prompt stays in the KV cache for a reply that follows."""
        if not ids:
            raise GenerationError("the prompt is empty")
        if self._decoder is not None:
            raise GenerationError(f"logprobs of the prompt (echo) need the model loaded with parallel=1 "
                                  f"(it has parallel={self.concurrency})")
        check_fits(len(ids), self.context_length)
        return prompt_logprobs(self._llm, ids, top)

    def _prefill(self, ids: list[int]) -> int:
        """Evaluate all but the prompt's last token, reusing the KV cache's common
        prefix and, with context shift on, the kept turns held further on in the cache
        (kv_reuse.py); return how many prompt tokens are evaluated in all.

        Why the last token goes alone: llama.cpp's CPU kernels give slightly
        different floats for a token evaluated inside a batch than alone. If a fresh
        prompt's last token came from a batch but a repeated prompt's last token were
        re-evaluated alone (which is what reuse must do), a greedy reply could differ
        between two identical requests. Evaluating it alone every time keeps replies
        repeatable while still reusing the cache.
        """
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        keep = llm.longest_token_prefix(cached, ids)
        keep = min(keep, len(ids) - 1)
        if self.context_shift:
            shift = plan_shift(llm.input_ids[: llm.n_tokens], ids[:-1])
            if shift is not None and apply_shift(llm, shift):
                keep = shift.reused
        if keep < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.reset()  # this architecture cannot drop a KV suffix: start over
            keep = 0
        llm.n_tokens = keep
        if keep < len(ids) - 1:
            llm.eval(ids[keep:-1])
        # llm.generate() now finds all but the last token cached and evaluates it alone.
        return len(ids) - keep

    def _restore_from_cache(self, prompt_ids: Sequence[int]) -> None:
        llm = self._llm
        try:
            item = llm.cache[prompt_ids]
        except KeyError:
            return
        lcp = llm.longest_token_prefix
        if lcp(item.input_ids.tolist(), prompt_ids) > lcp(llm._input_ids.tolist(), prompt_ids):
            llm.load_state(item)

    def set_adapters(self, adapters: Sequence[AdapterSpec]) -> None:
        """Apply exactly these LoRA adapters, without reloading; the KV cache is not
        reused across a change (LlamaCppAdapters.apply)."""
        self.adapters.apply(adapters)
        if self._decoder is not None:
            self._decoder.forget()

    def unload(self) -> None:
        if self.adapters is not None:  # off the context and freed while the model exists
            self.adapters.close()
            self.adapters = None
        if self._drafter is not None:
            self._drafter.close()
            self._drafter = None
        if self._decoder is not None:  # its thread ends before the context it decodes on
            self._decoder.close()
            self._decoder = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None
