"""How good and how fast one GGUF file is on this machine, through llama.cpp: the
quant advisor's measuring (webui/modelfiles/advisor.py runs it over several files).

- Perplexity the way llama.cpp's `llama-perplexity` computes it: the text is cut into
  chunks of n_ctx tokens (the first token of each made BOS where the vocabulary adds
  one), each chunk is evaluated from an empty KV cache, and only the second half of
  each chunk is scored, so every scored token sees at least n_ctx/2 tokens of context.
  Only the scored positions ask llama.cpp for logits, which halves the output layer's
  work and the logits buffer.
- KL divergence KL(P_ref || P) against a reference file of the same model, over the same
  scored positions, and how often both put the same token first. The reference's
  distributions are kept as their top TOP_K log-probabilities per position with the
  rest of the vocabulary collapsed into one "other" bucket: 1,275 positions x 256 x 8
  bytes is 2.6 MB, where full float32 distributions would be 250 MB with SmolLM2's
  49,152 tokens (1.3 GB with a 256k vocabulary). Collapsing can only lower KL (the
  log-sum inequality), and by little: see TOP_K.
- Prompt and generation speed like llama-bench's pp512 and tg128: 512 tokens decoded
  as one batch into an empty cache, then 128 tokens one at a time from an empty cache.

numpy and llama_cpp are imported inside the functions that need them, so importing
this module costs nothing at start-up.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loaders import cpu_repack
from loaders.base import LoadError
from loaders.errors import ErrorKind, UserError
from loaders.gguf import GGUFHeader, SkippedArray, checked_header
from loaders.option_limits import usable_cpus

if TYPE_CHECKING:
    import numpy as np

# Reference log-probs kept per scored position. Measured on SmolLM2-135M (Q2_K against
# an F16 reference, 1,275 positions): KL from the top 64 was 4.6% below the full-vocabulary
# KL, from the top 256 1.1% below, from the top 1024 0.2% below; 256 costs 2 KB a position.
TOP_K = 1024


class MeasureError(UserError):
    """A file could not be measured (too short a text, a different tokenizer); one line."""

    kind = ErrorKind.INVALID


# --- the arithmetic (plain numpy, tested on small arrays) ---------------------------------

def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities, in float32 (the logits' own precision), stable."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def token_nll(logprobs: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """-log P(target) per row, in float64."""
    import numpy as np

    rows = np.arange(len(targets))
    return -logprobs[rows, np.asarray(targets)].astype(np.float64)


def perplexity(nll_sum: float, count: int) -> float:
    return math.exp(nll_sum / count) if count else math.nan


def top_k(logprobs: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """The k most likely token ids per row, most likely first, and their log-probs."""
    import numpy as np

    k = min(k, logprobs.shape[-1])
    ids = np.argpartition(-logprobs, k - 1, axis=-1)[:, :k]
    values = np.take_along_axis(logprobs, ids, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    return np.take_along_axis(ids, order, axis=-1).astype(np.int32), np.take_along_axis(values, order, axis=-1)


def kl_full(ref_logprobs: np.ndarray, logprobs: np.ndarray) -> np.ndarray:
    """KL(P_ref || P) per row over the whole vocabulary, in float64."""
    import numpy as np

    p = np.exp(ref_logprobs.astype(np.float64))
    return (p * (ref_logprobs.astype(np.float64) - logprobs.astype(np.float64))).sum(axis=-1)


def kl_top_k(ref_ids: np.ndarray, ref_logprobs: np.ndarray, logprobs: np.ndarray) -> np.ndarray:
    """KL(P_ref || P) per row, with the reference known only at `ref_ids` and every
    other token merged into one bucket on both sides. Exact when the reference's
    tail is empty; otherwise a lower bound of the full KL."""
    import numpy as np

    ref = ref_logprobs.astype(np.float64)
    mine = np.take_along_axis(logprobs, ref_ids, axis=-1).astype(np.float64)
    p = np.exp(ref)
    head = (p * (ref - mine)).sum(axis=-1)
    p_rest = np.clip(1.0 - p.sum(axis=-1), 0.0, 1.0)
    q_rest = np.clip(1.0 - np.exp(mine).sum(axis=-1), 1e-30, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(p_rest > 1e-12, p_rest * np.log(np.maximum(p_rest, 1e-30) / q_rest), 0.0)
    return np.maximum(head + tail, 0.0)  # float rounding must not make a KL negative


@dataclass(frozen=True)
class ReferenceDistributions:
    """The reference file's predictions at the scored positions, in scoring order."""
    tokens: tuple[int, ...]  # the text as the reference tokenized it (same model, same ids)
    ids: np.ndarray          # (positions, TOP_K) int32, most likely first
    logprobs: np.ndarray     # (positions, TOP_K) float32


class QualityTally:
    """Sums over scored chunks: negative log-likelihood, KL against a reference, top-1
    agreement; and, for the reference file itself, its top-K distributions."""

    def __init__(self, reference: ReferenceDistributions | None = None, keep_reference: bool = False):
        self.reference = reference
        self.keep_reference = keep_reference
        self.count = 0
        self.nll_sum = 0.0
        self.kl_sum = 0.0
        self.same_top = 0
        self._kept: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, logprobs: np.ndarray, targets: Sequence[int]) -> None:
        self.nll_sum += float(token_nll(logprobs, targets).sum())
        if self.reference is not None:
            rows = slice(self.count, self.count + len(targets))
            ids, ref = self.reference.ids[rows], self.reference.logprobs[rows]
            self.kl_sum += float(kl_top_k(ids, ref, logprobs).sum())
            self.same_top += int((logprobs.argmax(axis=-1) == ids[:, 0]).sum())
        if self.keep_reference:
            self._kept.append(top_k(logprobs))
        self.count += len(targets)

    @property
    def perplexity(self) -> float:
        return perplexity(self.nll_sum, self.count)

    @property
    def mean_kl(self) -> float | None:
        return self.kl_sum / self.count if self.reference is not None and self.count else None

    @property
    def top1_agreement(self) -> float | None:
        return self.same_top / self.count if self.reference is not None and self.count else None

    def distributions(self, tokens: Sequence[int]) -> ReferenceDistributions:
        import numpy as np

        return ReferenceDistributions(tuple(tokens), np.concatenate([k[0] for k in self._kept]),
                                      np.concatenate([k[1] for k in self._kept]))


def chunks_of(tokens: Sequence[int], n_ctx: int, bos: int | None) -> list[list[int]]:
    """Whole chunks of n_ctx tokens (a shorter tail is dropped, as llama-perplexity
    does), each starting with BOS when the vocabulary adds one."""
    out = []
    for start in range(0, len(tokens) - n_ctx + 1, n_ctx):
        chunk = list(tokens[start:start + n_ctx])
        if bos is not None:
            chunk[0] = bos
        out.append(chunk)
    return out


# --- one file through llama.cpp ------------------------------------------------------------

@dataclass(frozen=True)
class FileFacts:
    """What the header says, before anything is loaded."""
    quantization: str | None
    bits_per_weight: float | None
    n_params: int
    vocab_size: int | None
    identity: tuple  # architecture, layers, width: the same for every quantization of a model
    kv_bytes_per_token: float | None


def file_facts(path: Path) -> FileFacts:
    """Header facts; a one-line LoadError when the file is not a readable GGUF."""
    return _facts(checked_header(path, LoadError))


def _facts(header: GGUFHeader) -> FileFacts:
    n_params = sum(math.prod(t.shape) for t in header.tensors)
    sizes = [t.n_bytes for t in header.tensors]
    bpw = sum(sizes) * 8 / n_params if n_params and None not in sizes else None
    tokens = header.get("tokenizer.ggml.tokens")
    vocab = tokens.count if isinstance(tokens, SkippedArray) else len(tokens) if isinstance(tokens, list) else None
    kv = header.kv_cache_bytes(1)
    identity = (header.architecture, header.n_layers, header.arch_value("embedding_length"), vocab)
    return FileFacts(header.quantization, bpw, n_params, vocab, identity, kv)


@dataclass(frozen=True)
class FileMeasurement:
    perplexity: float
    scored_tokens: int
    mean_kl: float | None
    top1_agreement: float | None
    prompt_tokens_per_second: float
    generation_tokens_per_second: float
    rss_growth_bytes: int | None   # the process's resident memory while it was loaded, over before
    kv_bytes: int | None           # f16 K and V at the context used
    n_ctx: int                     # the context it was loaded with
    reference: ReferenceDistributions | None = None  # when it was measured as the reference


Step = Callable[[str, float], None]  # (what it is doing, fraction of this file done)


def measure_file(path: Path, text: str, *, n_ctx: int = 512, threads: int = 0, prompt_tokens: int = 512,
                 generation_tokens: int = 128, reference: ReferenceDistributions | None = None,
                 keep_reference: bool = False, cancel: threading.Event | None = None,
                 on_step: Step | None = None) -> FileMeasurement | None:
    """Load `path`, measure it, free it. None when `cancel` was set before it finished
    (checked between chunks and between generated tokens)."""
    cancel = cancel or threading.Event()
    step = on_step or (lambda what, fraction: None)
    step("loading", 0.0)
    if cancel.is_set():
        return None
    facts = file_facts(path)
    rss_before = _rss()
    context = max(n_ctx, prompt_tokens, generation_tokens + 1)
    bench = _Bench(path, context, max(n_ctx, prompt_tokens), threads or usable_cpus(), facts.quantization)
    try:
        tokens = bench.tokenize(text)
        chunks = chunks_of(tokens, n_ctx, bench.bos)
        if not chunks:
            raise MeasureError(f"the text is {len(tokens)} tokens for {path.name}, shorter than one chunk "
                               f"of n_ctx={n_ctx}; choose a smaller n_ctx")
        if reference is not None and tuple(tokens) != reference.tokens:
            raise MeasureError(f"{path.name} tokenizes the text differently from the reference: "
                               "KL divergence compares files of one model")
        tally = QualityTally(reference, keep_reference)
        for i, chunk in enumerate(chunks):
            if cancel.is_set():
                return None
            step(f"perplexity, chunk {i + 1} of {len(chunks)}", 0.05 + 0.7 * i / len(chunks))
            logprobs, targets = bench.score(chunk)
            tally.add(logprobs, targets)
            del logprobs
        if cancel.is_set():
            return None
        step(f"pp{prompt_tokens}", 0.75)
        pp = bench.prompt_speed(_repeat(tokens, prompt_tokens))
        if cancel.is_set():
            return None
        step(f"tg{generation_tokens}", 0.85)
        tg = bench.generation_speed(_repeat(tokens, generation_tokens), cancel)
        if tg is None:
            return None
        rss = _rss()
        grown = rss - rss_before if rss is not None and rss_before is not None else None
        kv = int(facts.kv_bytes_per_token * context) if facts.kv_bytes_per_token else None
        distributions = tally.distributions(tokens) if keep_reference else None
        step("done", 1.0)
        return FileMeasurement(tally.perplexity, tally.count, tally.mean_kl, tally.top1_agreement, pp, tg,
                               grown, kv, context, distributions)
    finally:
        bench.close()


def _repeat(tokens: Sequence[int], n: int) -> list[int]:
    """n tokens of the text (repeated if it is shorter): what llama-bench's random
    tokens stand for, but real ones, so every run decodes the same input."""
    return [tokens[i % len(tokens)] for i in range(n)]


def _rss() -> int | None:
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except (ImportError, OSError):
        return None


class _Bench:
    """One llama.cpp model and context driven batch by batch, with our own logits flags."""

    def __init__(self, path: Path, n_ctx: int, n_batch: int, threads: int, quantization: str | None):
        try:
            import llama_cpp
        except ImportError:
            raise LoadError("llama-cpp-python is not installed: run ./start.sh, or pip install llama-cpp-python") from None
        self._lib = llama_cpp
        repack = cpu_repack.decide("auto", path, quantization)
        try:
            with cpu_repack.model_params(use_extra_bufts=repack):
                self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                                           n_threads=threads, n_threads_batch=threads, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise LoadError(f"llama.cpp could not load {path.name}: {e}") from None
        vocab = self.llm._model.vocab
        self.n_vocab = self.llm.n_vocab()
        self.bos = self.llm.token_bos() if llama_cpp.llama_vocab_get_add_bos(vocab) else None

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def _decode(self, tokens: Sequence[int], outputs: Callable[[int], bool]) -> int:
        """Decode `tokens` at positions 0.. of an emptied cache; logits for the
        positions `outputs` picks. Returns how many rows of logits there are."""
        llm = self.llm
        llm._ctx.kv_cache_clear()
        batch = llm._batch
        batch.set_batch(batch=list(tokens), n_past=0, logits_all=False)
        flagged = 0
        for i in range(len(tokens)):
            out = outputs(i)
            batch.batch.logits[i] = out
            flagged += out
        llm._ctx.decode(batch)
        return flagged

    def score(self, chunk: Sequence[int]) -> tuple[np.ndarray, list[int]]:
        """Log-probs at the chunk's second half (each predicting the next token), and
        those next tokens."""
        import numpy as np

        first = len(chunk) // 2
        rows = self._decode(chunk, lambda i: first <= i < len(chunk) - 1)
        logits = np.ctypeslib.as_array(self._lib.llama_get_logits(self.llm._ctx.ctx), shape=(rows, self.n_vocab))
        return log_softmax(logits), list(chunk[first + 1:])

    def prompt_speed(self, tokens: Sequence[int]) -> float:
        last = len(tokens) - 1
        start = time.perf_counter()
        self._decode(tokens, lambda i: i == last)
        self._lib.llama_synchronize(self.llm._ctx.ctx)
        return len(tokens) / (time.perf_counter() - start)

    def generation_speed(self, tokens: Sequence[int], cancel: threading.Event) -> float | None:
        llm = self.llm
        self._decode(tokens[:1], lambda i: True)  # warm-up, as llama-bench does; not timed
        llm._ctx.kv_cache_clear()
        batch = llm._batch
        start = time.perf_counter()
        for pos, token in enumerate(tokens):
            if cancel.is_set():
                return None
            batch.set_batch(batch=[token], n_past=pos, logits_all=True)
            llm._ctx.decode(batch)
        self._lib.llama_synchronize(llm._ctx.ctx)
        return len(tokens) / (time.perf_counter() - start)

    def close(self) -> None:
        self.llm.close()
