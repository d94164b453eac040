"""Will it fit? RAM and VRAM a model needs at a given context, against what this
machine has free.

estimate = weights + KV cache at n_ctx + runtime overhead. The shape (layers, KV heads,
head size, per-layer weights) comes from a GGUF header, possibly only its first bytes
read with a range request before download, or from a Transformers `config.json`.
Free RAM comes from psutil, free VRAM from `nvidia-smi` when there is one.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loaders.gguf import KV_CACHE_TYPES, SkippedArray, kv_bytes_per_value
from webui.errors import ErrorKind, UserError

MiB = 1 << 20
GiB = 1 << 30

# Measured on the SmolLM2 GGUF through llama.cpp (RSS growth after loading, at n_ctx
# 512, 2048 and 8192): weights + KV explained all but ~22 MiB, whatever the context.
# That rest is the library's own allocations plus the part of the compute buffer one
# batch touches, which grows with the width of the model; see `_overhead`.
RUNTIME_BASE = 32 * MiB
BATCH_TOKENS = 512  # llama.cpp's n_ubatch default in Hearth
# A CUDA context and cuBLAS workspace cost this much VRAM on each GPU before any layer.
GPU_CONTEXT = 400 * MiB

# Headers and config.json files are untrusted: every number read from one is checked
# against what a real model could have before any arithmetic uses it. The largest
# published models have ~160 layers, 128 attention heads of up to 256 dimensions, a
# width of ~25k, 256k-token vocabularies and 10M-token contexts; these leave room.
MAX_LAYERS = 4096
MAX_HEADS = 1 << 14
MAX_HEAD_DIM = 1 << 16
MAX_WIDTH = 1 << 20         # embedding and feed-forward sizes
MAX_VOCAB = 1 << 24
MAX_CONTEXT = 1 << 24


class ShapeError(UserError, ValueError):
    """A header or config.json claims a shape no real model has (one line)."""

    kind = ErrorKind.INVALID


def _plausible(value: Any, maximum: int, what: str) -> int | None:
    """A count or size from a model's metadata: None when absent, zero or not an integer
    (the estimate goes without it), a ShapeError when it is beyond any real model's."""
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        return None
    if value < 0 or value > maximum:
        raise ShapeError(f"the model claims {what} = {value:,}; no real model has more than {maximum:,}")
    return value


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model, wherever it came from."""
    weights_bytes: int
    n_layers: int | None = None
    kv_values_per_token: tuple[int, int] | None = None  # K values, V values; all layers
    layer_bytes: tuple[int, ...] = ()      # per repeating layer; empty = spread evenly
    n_embd: int | None = None
    n_ff: int | None = None
    n_vocab: int | None = None
    context_length: int | None = None      # the model's own, for n_ctx = 0
    # GGUF: llama.cpp's type_k/type_v size the KV cache. Transformers keeps it in the
    # model's dtype, so an estimate for a config.json ignores the KV types (f16).
    kv_types_apply: bool = False

    @property
    def kv_bytes_per_token(self) -> int | None:
        """K and V at f16, all layers."""
        return self.kv_bytes_per_token_as("f16", "f16")

    def kv_bytes_per_token_as(self, type_k: str, type_v: str) -> int | None:
        if self.kv_values_per_token is None:
            return None
        if not self.kv_types_apply:
            type_k = type_v = "f16"
        k, v = self.kv_values_per_token
        return round(k * kv_bytes_per_value(type_k) + v * kv_bytes_per_value(type_v))

    @property
    def per_layer_weights(self) -> float:
        if self.layer_bytes:
            return sum(self.layer_bytes) / len(self.layer_bytes)
        if not self.n_layers:
            return float(self.weights_bytes)
        # Without a tensor table, count the embedding and output as one more layer.
        return self.weights_bytes / (self.n_layers + 1)

    @property
    def nonlayer_weights(self) -> float:
        if self.layer_bytes:
            return max(self.weights_bytes - sum(self.layer_bytes), 0)
        return self.weights_bytes - self.per_layer_weights * (self.n_layers or 0)


def shape_from_gguf(header, file_size: int) -> ModelShape:
    """From a full header (with its tensor table) or a prefix (metadata only)."""
    n_layers = _plausible(header.arch_value("block_count"), MAX_LAYERS, "block_count")
    n_embd = _plausible(header.arch_value("embedding_length"), MAX_WIDTH, "embedding_length")
    _plausible(header.arch_value("attention.head_count"), MAX_HEADS, "attention.head_count")
    for key in ("attention.key_length", "attention.value_length"):
        _plausible(header.arch_value(key), MAX_HEAD_DIM, key)
    kv_heads = header.arch_value("attention.head_count_kv")
    for n in kv_heads if isinstance(kv_heads, list) else [kv_heads]:
        _plausible(n, MAX_HEADS, "attention.head_count_kv")
    kv = header.kv_values_per_token() if n_layers else None
    layer_bytes: tuple[int, ...] = ()
    if header.tensors and n_layers:
        # Only layers that have tensors get an entry: as many as the file describes, never
        # as many as block_count claims.
        per: dict[int, int] = {}
        for t in header.tensors:
            m = _LAYER_TENSOR.match(t.name)
            if m and int(m.group(1)) < n_layers and t.n_bytes is not None:
                per[int(m.group(1))] = per.get(int(m.group(1)), 0) + t.n_bytes
        if len(per) == n_layers and all(per.values()):
            layer_bytes = tuple(per[i] for i in range(n_layers))
    vocab = header.arch_value("vocab_size")
    if vocab is None:
        tokens = header.get("tokenizer.ggml.tokens")
        vocab = (tokens.count if isinstance(tokens, SkippedArray)
                 else len(tokens) if isinstance(tokens, list) else None)
    return ModelShape(weights_bytes=file_size, n_layers=n_layers, kv_values_per_token=kv, kv_types_apply=True,
                      layer_bytes=layer_bytes, n_embd=n_embd,
                      n_ff=_plausible(header.arch_value("feed_forward_length"), MAX_WIDTH, "feed_forward_length"),
                      n_vocab=_plausible(vocab, MAX_VOCAB, "vocab_size"),
                      context_length=_plausible(header.arch_value("context_length"), MAX_CONTEXT,
                                                "context_length"))


_LAYER_TENSOR = re.compile(r"blk\.(\d{1,9})\.")


def shape_from_config(config: Mapping[str, Any], weights_bytes: int) -> ModelShape:
    """From a Transformers config.json (multimodal configs keep it under text_config)."""
    cfg = config.get("text_config") or config
    if not isinstance(cfg, Mapping):
        raise ShapeError("config.json's text_config is not an object")

    def first(maximum: int, *keys: str) -> int | None:
        for key in keys:
            value = _plausible(cfg.get(key), maximum, key)
            if value is not None:
                return value
        return None

    n_layers = first(MAX_LAYERS, "num_hidden_layers", "n_layer", "num_layers")
    hidden = first(MAX_WIDTH, "hidden_size", "n_embd", "d_model")
    heads = first(MAX_HEADS, "num_attention_heads", "n_head")
    kv_heads = first(MAX_HEADS, "num_key_value_heads") or heads
    head_dim = first(MAX_HEAD_DIM, "head_dim") or (hidden // heads if hidden and heads else None)
    kv = (n_layers * kv_heads * head_dim,) * 2 if (n_layers and kv_heads and head_dim) else None
    return ModelShape(weights_bytes=weights_bytes, n_layers=n_layers, kv_values_per_token=kv,
                      n_embd=hidden, n_ff=first(MAX_WIDTH, "intermediate_size"),
                      n_vocab=first(MAX_VOCAB, "vocab_size"),
                      context_length=first(MAX_CONTEXT, "max_position_embeddings"))


@dataclass(frozen=True)
class Estimate:
    weights_bytes: int
    kv_bytes: int
    overhead_bytes: int
    n_ctx: int
    shape: ModelShape

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.overhead_bytes

    @property
    def n_layers(self) -> int | None:
        return self.shape.n_layers

    def layer_bytes(self) -> float:
        """One repeating layer's weights and its share of the KV cache."""
        n = self.shape.n_layers or 1
        return self.shape.per_layer_weights + self.kv_bytes / n


def _overhead(shape: ModelShape) -> int:
    # Activations of one batch: the residual stream, attention and FFN intermediates.
    width = 4 * (shape.n_embd or 0) + 2 * (shape.n_ff or 0)
    return RUNTIME_BASE + BATCH_TOKENS * width * 4


def estimate(shape: ModelShape, n_ctx: int, type_k: str = "f16", type_v: str = "f16") -> Estimate:
    """At n_ctx tokens of context (0 means the model's own, as llama.cpp reads it), with
    llama.cpp's KV-cache types (KV_CACHE_TYPES names) where the model is a GGUF."""
    for name, kv_type in (("type_k", type_k), ("type_v", type_v)):
        if kv_type not in KV_CACHE_TYPES:
            raise UserError(f"{name} must be one of {', '.join(KV_CACHE_TYPES)} (got {kv_type!r})", kind=ErrorKind.INVALID)
    n_ctx = n_ctx or shape.context_length or 4096
    kv = (shape.kv_bytes_per_token_as(type_k, type_v) or 0) * max(n_ctx, 0)
    return Estimate(shape.weights_bytes, kv, _overhead(shape), n_ctx, shape)


# --- this machine ---------------------------------------------------------------------
@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Machine:
    free_ram_bytes: int
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """`nvidia-smi --query-gpu=index,name,memory.free,memory.total --format=csv,noheader,nounits`
    prints one line per GPU, memory in MiB."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        try:
            index, free, total = int(parts[0]), int(float(parts[-2])), int(float(parts[-1]))
        except ValueError:
            continue  # "[N/A]" on some virtualised GPUs
        gpus.append(Gpu(index, ", ".join(parts[1:-2]), free * MiB, total * MiB))
    return tuple(gpus)


def detect_gpus() -> tuple[Gpu, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.free,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else ()


def detect_machine() -> Machine:
    import psutil

    return Machine(psutil.virtual_memory().available, detect_gpus())


# --- the verdict ----------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    kind: str          # "vram" | "partial" | "ram" | "none"
    text: str          # "fits in VRAM", "fits with 20 of 32 layers on the GPU", ...
    gpu_layers: int    # what to give llama.cpp's n_gpu_layers (-1 = all)


def _layers_on_gpus(est: Estimate, machine: Machine) -> int:
    per_layer = est.layer_bytes()
    if per_layer <= 0:
        return 0
    overhead = est.overhead_bytes
    return sum(max(int((g.free_bytes - GPU_CONTEXT - overhead) // per_layer), 0) for g in machine.gpus)


def verdict(est: Estimate, machine: Machine) -> Verdict:
    n = est.n_layers
    total = est.total_bytes
    if machine.gpus:
        whole = total + GPU_CONTEXT * len(machine.gpus)
        if whole <= sum(g.free_bytes for g in machine.gpus) and (n is None or _layers_on_gpus(est, machine) >= n):
            return Verdict("vram", "fits in VRAM", -1)
        on_gpu = min(_layers_on_gpus(est, machine), n or 0)
        if on_gpu > 0:
            # The layers left on the CPU, the embeddings, their KV and the runtime stay in RAM.
            in_ram = total - on_gpu * est.layer_bytes()
            if in_ram <= machine.free_ram_bytes:
                return Verdict("partial", f"fits with {on_gpu} of {n} layers on the GPU", on_gpu)
    if total <= machine.free_ram_bytes:
        return Verdict("ram", "fits in RAM only", 0)
    return Verdict("none", "does not fit", 0)


def propose_gpu_layers(est: Estimate, machine: Machine) -> int:
    """n_gpu_layers for llama.cpp: all when the model fits, else as many as fit, else 0."""
    return verdict(est, machine).gpu_layers


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def summary(est: Estimate, machine: Machine) -> str:
    """One line: '≈ 190.1 MB at 2,048 tokens (weights 98.4 MB + KV cache 47.2 MB + runtime 44.6 MB): fits in RAM only'."""
    v = verdict(est, machine)
    return (f"≈ {human_bytes(est.total_bytes)} at {est.n_ctx:,} tokens (weights "
            f"{human_bytes(est.weights_bytes)} + KV cache {human_bytes(est.kv_bytes)} + runtime "
            f"{human_bytes(est.overhead_bytes)}): {v.text}")
