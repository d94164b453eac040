"""Speculative decoding for the llama.cpp backend: a drafter guesses the next tokens,
the target model evaluates the last sampled token and every guess in one batch, and
the target's own sampler keeps each guess while it samples exactly that token.

Two drafters: `DraftModel` (a smaller GGUF with the same vocabulary, run greedily, its
KV cache reused from call to call) and `PromptLookup` (no model: the continuation of
the latest earlier occurrence of the text's last n tokens, which pays off when the
reply repeats the prompt, as in editing or extraction).

Every token still comes from the target's sampler chain, so the reply is the one the
target would give alone, except for rounding: llama.cpp's CPU kernels give slightly
different floats for a token evaluated inside a batch than alone, and a greedy choice
between two near-equal logits can flip (measured in bench/speculative.py).

`llama_cpp` is imported inside functions, as in the rest of the loaders.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from loaders import cpu_repack
from loaders.base import LoadError
from loaders.gguf import checked_header

if TYPE_CHECKING:
    import numpy as np

DRAFT_MODEL = "draft model"
PROMPT_LOOKUP = "prompt lookup"


@dataclass
class SpeculationCounts:
    """One reply's speculation: tokens proposed, tokens the target kept, batches run."""

    method: str
    drafted: int = 0
    accepted: int = 0
    steps: int = 0  # target evaluations (one batch each: the last token plus its draft)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class Drafter(Protocol):
    method: str

    def draft(self, context: np.ndarray, n: int) -> list[int]:
        """At most `n` tokens that may follow `context` (every token so far)."""
        ...

    def close(self) -> None: ...


class PromptLookup:
    """Drafts by prompt lookup: finds the latest earlier place where the context's last
    `ngram` tokens (or, failing that, fewer, down to `min_ngram`) occurred, and proposes
    what followed them there.

    Why no single-token matches by default: on chat replies that do not repeat the
    prompt they drafted 3 times as much and kept 18 % (0.65 x the speed without), against
    44 % and 0.94 x from two tokens up; on an editing task two tokens up kept 89 % instead
    of 75 % (bench/speculative.py, SmolLM2 Q4_1, 1 thread)."""

    method = PROMPT_LOOKUP

    def __init__(self, ngram: int, n_draft: int, min_ngram: int = 2):
        self.ngram = ngram
        self.min_ngram = min(min_ngram, ngram)
        self.n_draft = n_draft

    def draft(self, context: np.ndarray, n: int) -> list[int]:
        import numpy as np

        n = min(n, self.n_draft)
        size = len(context)
        if n <= 0 or size < 2:
            return []
        earlier = context[:-1]  # a match must end before the last token: not the suffix itself
        for length in range(min(self.ngram, size - 1), self.min_ngram - 1, -1):
            windows = np.lib.stride_tricks.sliding_window_view(earlier, length)
            hits = np.flatnonzero((windows == context[size - length:]).all(axis=1))
            if hits.size:
                start = int(hits[-1]) + length
                return context[start:start + n].tolist()
        return []

    def close(self) -> None:
        pass


class DraftModel:
    """Drafts with a second llama.cpp model, greedily. Its KV cache keeps the context
    it saw last time, so each call evaluates only what the target accepted since, plus
    one token per drafted token."""

    method = DRAFT_MODEL

    def __init__(self, llm, n_draft: int):
        from llama_cpp._internals import LlamaSampler

        self._llm = llm
        self.n_draft = n_draft
        self._greedy = LlamaSampler()
        self._greedy.add_greedy()

    def draft(self, context: np.ndarray, n: int) -> list[int]:
        import llama_cpp

        llm = self._llm
        n = min(n, self.n_draft)
        size = len(context)
        # Past its own context the draft model cannot see the whole text: no guesses
        # (the target goes on alone) rather than guesses from a cut-off text.
        if n <= 0 or size + n > llm.n_ctx():
            return []
        keep = _common_prefix(llm.input_ids[:llm.n_tokens], context)
        keep = min(keep, size - 1)  # the last token is evaluated again for fresh logits
        if keep < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.reset()
            keep = 0
        llm.n_tokens = keep
        llm.eval(context[keep:].tolist())
        vocab = llm._model.vocab
        out: list[int] = []
        while True:
            token = self._greedy.sample(llm._ctx, -1)
            out.append(token)
            if len(out) >= n or llama_cpp.llama_vocab_is_eog(vocab, token):
                return out
            llm.eval([token])

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    import numpy as np

    m = min(len(a), len(b))
    differ = np.flatnonzero(a[:m] != b[:m])
    return int(differ[0]) if differ.size else m


def speculative_tokens(llm, prompt_ids: Sequence[int], drafter: Drafter, counts: SpeculationCounts,
                       budget: int) -> Iterator[int]:
    """The tokens `llm.generate(prompt_ids, reset=True)` would yield, produced by
    verifying drafts; at most `budget` tokens are wanted, so no longer drafts are made.

    llama-cpp-python's own draft path (Llama(draft_model=...)) needs logits_all, an
    n_ctx x vocabulary float array (800 MB for SmolLM2 at 4096 tokens, 16 GiB for a
    128k vocabulary at 32k) filled for every prompt token; here only the verification
    batch asks llama.cpp for more than one row of logits, and none are copied."""
    import numpy as np

    llm._sampler = llm._init_sampler()  # Hearth's sampler chain, as llm.generate does
    ids = np.asarray(prompt_ids, dtype=np.intc)
    # Like llm.generate: reuse what the KV cache holds of the prompt, evaluate the rest
    # but its last token, which goes into the first verification batch.
    keep = min(_common_prefix(llm.input_ids[:llm.n_tokens], ids), len(ids) - 1)
    if keep < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
        llm.reset()
        keep = 0
    llm.n_tokens = keep
    if keep < len(ids) - 1:
        llm.eval(ids[keep:-1].tolist())
    pending = [int(ids[-1])]
    n_ctx = llm.n_ctx()
    batch = llm._batch
    produced = 0
    # Verification batches run while the reply streams, so they get the generation
    # threads, not the prompt's: on 2 busy cores a 2-thread batch of 8 tokens took
    # 1.4-7 s against 0.16 s on 1 thread (threads spinning at barriers).
    threads, threads_batch = llm.context_params.n_threads, llm.context_params.n_threads_batch
    llm._ctx.set_n_threads(threads, threads)
    try:
        while True:
            n_past = llm.n_tokens
            llm.input_ids[n_past:n_past + len(pending)] = pending
            # A draft longer than what is left of the reply, the context or a batch is waste.
            room = min(budget - produced - 1, n_ctx - n_past - len(pending), llm.n_batch - len(pending))
            draft = drafter.draft(llm.input_ids[:n_past + len(pending)], room) if room > 0 else []
            seq = pending + draft
            batch.set_batch(seq, n_past, logits_all=True)
            llm._ctx.decode(batch)
            llm.input_ids[n_past:n_past + len(seq)] = seq
            llm.n_tokens = n_past + len(seq)
            llm._requires_eval = False
            counts.steps += 1
            counts.drafted += len(draft)
            for i in range(len(seq)):
                token = llm._sampler.sample(llm._ctx, i)
                kept = i < len(draft) and token == draft[i]
                counts.accepted += kept
                produced += 1
                yield token
                if not kept:
                    # Drop the guesses after the first wrong one from the KV cache.
                    _truncate(llm, n_past + i + 1)
                    pending = [token]
                    break
    finally:
        # Stopped in the middle of a batch: forget the guesses no one kept.
        _truncate(llm, len(ids) - 1 + produced)
        llm._ctx.set_n_threads(threads, threads_batch)


def _truncate(llm, n_tokens: int) -> None:
    if n_tokens < llm.n_tokens:
        llm._ctx.kv_cache_seq_rm(-1, n_tokens, -1)
        llm.n_tokens = n_tokens
        llm._requires_eval = True


@dataclass(frozen=True)
class Vocabulary:
    kind: int
    bos: int
    eos: int
    texts: tuple[bytes, ...]


def vocabulary_of(llm) -> Vocabulary:
    """Every token's text, read once per load: 86 ms for SmolLM2's 49,152 tokens on a
    busy 2-core machine, so about 0.2 s for a 128k vocabulary."""
    import llama_cpp

    vocab = llm._model.vocab
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    return Vocabulary(llama_cpp.llama_vocab_type(vocab), llama_cpp.llama_vocab_bos(vocab),
                      llama_cpp.llama_vocab_eos(vocab),
                      tuple(llama_cpp.llama_vocab_get_text(vocab, i) or b"" for i in range(n)))


def vocabulary_difference(target: Vocabulary, draft: Vocabulary) -> str | None:
    """Why a draft model's token ids do not mean the target's (None: they do).

    Exact, unlike llama.cpp's own check (which lets the sizes differ by 128): Hearth
    hands draft ids to the target unchanged, so every id must be the same text."""
    if len(target.texts) != len(draft.texts):
        return f"{len(draft.texts)} tokens, the model has {len(target.texts)}"
    if target.kind != draft.kind:
        return "another tokenizer type"
    if (target.bos, target.eos) != (draft.bos, draft.eos):
        return "other begin/end-of-text tokens"
    for i, (a, b) in enumerate(zip(target.texts, draft.texts, strict=True)):
        if a != b:
            return f"token {i} differs"
    return None


def resolve_draft_path(value: str, model_path: Path) -> Path:
    """A draft model given as a path, or as a file name next to the model."""
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.exists() and (model_path.parent / path).exists():
        return model_path.parent / path
    return path


def check_choice(options) -> None:
    if options.draft_model and options.prompt_lookup_ngram:
        raise LoadError("draft_model and prompt_lookup_ngram are both set; choose one way to draft")


def make_drafter(options, target, draft_path: Path | None, threads: int, threads_batch: int) -> Drafter | None:
    """The drafter `options` ask for (None: no speculation). A draft model is loaded
    here, and closed again if it cannot draft for `target`."""
    if draft_path is None:
        if options.prompt_lookup_ngram:
            return PromptLookup(options.prompt_lookup_ngram, options.prompt_lookup_max)
        return None
    import llama_cpp

    header = checked_header(draft_path, LoadError, f"draft_model {draft_path.name}")
    repack = cpu_repack.decide(options.cpu_repack, draft_path, header.quantization)
    try:
        with cpu_repack.model_params(use_extra_bufts=repack):
            llm = llama_cpp.Llama(
                model_path=str(draft_path),
                n_ctx=options.draft_n_ctx or target.n_ctx(),
                n_threads=options.draft_threads or threads,
                n_threads_batch=options.draft_threads or threads_batch,
                n_batch=options.n_batch,
                n_ubatch=options.n_batch,
                n_gpu_layers=options.n_gpu_layers,
                use_mmap=options.use_mmap,
                verbose=False,
            )
    except (ValueError, RuntimeError) as e:
        raise LoadError(f"llama.cpp could not load draft_model {draft_path.name}: {e}") from None
    difference = vocabulary_difference(vocabulary_of(target), vocabulary_of(llm))
    if difference is not None:
        llm.close()
        raise LoadError(f"draft_model {draft_path.name} has another vocabulary than the model ({difference}); "
                        "a draft model must use the same tokenizer")
    return DraftModel(llm, options.draft_max)
