"""Continuous batching over one llama.cpp context: up to N replies decode together.

One decode thread per loaded model owns the llama_context (n_seq_max = N, one KV
stream of n_ctx cells per sequence, as llama-server gives `--parallel N`). Each step
it builds ONE llama_batch holding the next token of every generating reply plus a
chunk of the prompts of replies that are starting (llama-server's update_slots does
the same), calls llama_decode once, samples each reply from its own logits row with
that reply's own sampler chain, and hands the token to the reply's caller through a
queue. Callers (the generation engine's reply threads) never touch the context, so a
newcomer starts at the next step instead of after the running replies.

Each slot keeps the tokens its sequence holds after a reply ends. A new reply takes
the free slot that can keep the most of its prompt while dropping the least of
another chat's (_admit): the longest common prefix (as llama-server's slot selection), so turn
N+1 of a chat evaluates only its new tokens; with context shift on, also the later
turns of a chat whose oldest turns were dropped (kv_reuse.plan_shift, moved per
sequence here), so such a chat goes back to its own sequence rather than to any that
shares its system prompt.

As in LlamaCppModel._prefill, a prompt's last token is never evaluated inside a
prompt chunk: it is fed as the slot's first "generating" token, in the same place in
the batch a repeated request's would be, so the same request under the same
conditions gives the same greedy reply.

`llama_cpp` and numpy are imported inside functions, as in the rest of the loaders.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from loaders.base import GenerationError
from loaders.kv_reuse import Shift, common_prefix, plan_shift
from loaders.native_defaults import native_defaults

_END = object()  # a reply's queue: no more tokens


def context_params(**fields: Any) -> AbstractContextManager[None]:
    """Contexts made inside this block get these llama_context_params fields set
    (n_seq_max, kv_unified), which llama_cpp.Llama takes no arguments for
    (loaders/native_defaults.py)."""
    return native_defaults("llama_context_default_params", **fields)


@dataclass
class BatchReply:
    """One reply in the batch: what its caller asked for, and what the decode thread
    hands back. The caller reads `next_token()`; `close()` frees its slot at the next
    step (the sequence's KV stays for the next request that shares its prefix)."""
    prompt: list[int]
    sampler: Any  # a LlamaSampler or GrammarCheckedSampler, owned by the caller
    limit: int  # most tokens to generate
    stop_at_eog: bool
    prompt_eval_tokens: int = 0  # set before the first token is handed over
    logits: Any = None  # the raw logits row of the latest token handed over (numpy)
    closed: bool = False
    _out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    # Decode-thread state:
    _todo: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    _feed: int = -1  # the token to evaluate next once _todo is empty
    _produced: int = 0

    def next_token(self) -> int | None:
        """The next sampled token, or None at the end; raises GenerationError if the
        decode failed."""
        item = self._out.get()
        if item is _END:
            return None
        if isinstance(item, BaseException):
            raise item
        token, self.logits = item
        return token

    def close(self) -> None:
        self.closed = True


@dataclass
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # the tokens whose KV this sequence holds
    prompt_tokens: int = 0  # how many of them were the last reply's prompt (the rest, its reply)
    reply: BatchReply | None = None


class BatchedDecoder:
    """The decode loop of one context with `n_seq` sequences (see the module doc)."""

    def __init__(self, llm, n_seq: int, n_batch: int, context_shift: bool,
                 is_end_of_generation: Callable[[int], bool]):
        import llama_cpp

        self._llm = llm
        # llama.cpp runs any batch of more than one token on n_threads_batch; a step of
        # only generated tokens gets the generation thread count instead (Hearth leaves
        # a core to the server and browser while replies stream: see _default_threads).
        self._threads = (llm.n_threads, llm.n_threads_batch)
        self._threads_now = self._threads
        self._ctx = llm._ctx
        self._mem = llama_cpp.llama_get_memory(llm._ctx.ctx)
        self._n_vocab = llm.n_vocab()
        self._n_batch = max(n_batch, n_seq)
        self._context_shift = context_shift and llama_cpp.llama_memory_can_shift(self._mem)
        self._is_eog = is_end_of_generation
        self._slots = [_Slot(i) for i in range(n_seq)]
        self._waiting: list[BatchReply] = []
        # What the last step produced, handed to the callers just before the next
        # llama_decode: their threads then run (detokenize, stop strings, streaming)
        # while llama.cpp computes without the GIL, instead of holding the GIL while
        # this thread builds the next batch.
        self._deliveries: list[tuple[BatchReply, Any]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._thread = threading.Thread(target=self._run, name="hearth-llamacpp-batch", daemon=True)
        self._thread.start()

    # --- callers' side ------------------------------------------------------------
    def submit(self, reply: BatchReply) -> BatchReply:
        with self._cond:
            if self._stopping:
                raise GenerationError("the model is being unloaded")
            self._waiting.append(reply)
            self._cond.notify()
        return reply

    def release(self, reply: BatchReply) -> None:
        reply.close()
        with self._cond:
            self._cond.notify()

    def forget(self) -> None:
        """Reuse no KV state from now on (the LoRA adapters changed): every slot's
        tokens are dropped at its next admission."""
        with self._cond:
            for slot in self._slots:
                if slot.reply is None:
                    slot.cached = [-1]  # matches no prompt: the whole sequence is cleared

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        import llama_cpp

        llama_cpp.llama_batch_free(self._batch)

    # --- the decode thread --------------------------------------------------------
    def _deliver(self, reply: BatchReply, item: Any) -> None:
        self._deliveries.append((reply, item))

    def _flush(self) -> None:
        for reply, item in self._deliveries:
            reply._out.put(item)
        self._deliveries.clear()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and not any(
                        s.reply is not None for s in self._slots):
                    self._flush()  # the last step's ends, before sleeping
                    self._cond.wait()
                if self._stopping:
                    self._flush()
                    for reply in self._waiting + [s.reply for s in self._slots if s.reply is not None]:
                        reply._out.put(GenerationError("the model was unloaded"))
                    return
                for slot in self._slots:
                    if slot.reply is not None and slot.reply.closed:
                        self._end(slot)
                admitted = self._admit()
            for slot in admitted:
                self._prepare(slot)
            self._step()

    def _admit(self) -> list[_Slot]:
        """Give waiting replies, oldest first, the free slot that suits them best:
        - one whose last prompt the new prompt holds whole (a chat's next turn, or a
          regenerated reply): the same chat, so the one that keeps the most;
        - else the one that keeps the most of the prompt for the least of another
          chat's cache (each token kept is one not read now; each dropped, one that
          chat may read again at its next turn). A chat whose oldest turns were
          dropped still goes back to its own sequence, and a new chat that shares only
          the system prompt takes an empty slot rather than drop a conversation for it
          (the shortest slot, then, when none is empty)."""
        admitted = []
        while self._waiting:
            free = [s for s in self._slots if s.reply is None]
            if not free:
                break
            reply = self._waiting.pop(0)
            if reply.closed:
                reply._out.put(_END)
                continue
            slot = max(free, key=lambda s: self._suitability(s, reply.prompt))
            slot.reply = reply
            admitted.append(slot)
        return admitted

    def _suitability(self, slot: _Slot, ids: list[int]) -> tuple[bool, int, int]:
        kept = self._reusable(slot, ids)
        same_chat = slot.prompt_tokens > 0 and kept >= slot.prompt_tokens - 1
        return same_chat, kept if same_chat else 2 * kept - len(slot.cached), -len(slot.cached)

    def _reusable(self, slot: _Slot, ids: list[int]) -> int:
        """How many of the prompt's tokens the slot's sequence can keep: the common
        prefix, and with context shift the later turns of a chat whose oldest turns were
        dropped. Every chat shares its system prompt with every other, so the prefix
        alone would tie such a chat with all of them."""
        keep, shift = self._plan(slot, ids)
        return shift.reused if shift is not None else keep

    def _plan(self, slot: _Slot, ids: list[int]) -> tuple[int, Shift | None]:
        """What the slot's sequence can keep of the prompt (all but its last token):
        the common prefix, and with context shift on the shift that also keeps a later
        run (None where none does)."""
        keep = min(common_prefix(slot.cached, ids) if slot.cached else 0, len(ids) - 1)
        if self._context_shift and keep < len(slot.cached):
            return keep, plan_shift(slot.cached, ids[:-1])
        return keep, None

    def _prepare(self, slot: _Slot) -> None:
        """Keep what the slot's sequence shares with the prompt (all but its last token)
        and queue the rest for evaluation."""
        import llama_cpp

        reply = slot.reply
        ids = reply.prompt
        keep, shift = self._plan(slot, ids)
        if shift is not None:
            start, end = shift.prefix + shift.dropped, shift.prefix + shift.dropped + shift.run
            seq = slot.seq
            llama_cpp.llama_memory_seq_rm(self._mem, seq, end, -1)
            llama_cpp.llama_memory_seq_rm(self._mem, seq, shift.prefix, start)
            llama_cpp.llama_memory_seq_add(self._mem, seq, start, end, -shift.dropped)
            slot.cached = slot.cached[:shift.prefix] + slot.cached[start:end]
            keep = shift.reused
        if keep < len(slot.cached) and not llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, keep, -1):
            llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)  # cannot drop a suffix: start over
            keep = 0
        del slot.cached[keep:]
        slot.prompt_tokens = len(ids)
        reply._todo = ids[keep:-1]
        reply._feed = ids[-1]
        reply.prompt_eval_tokens = len(ids) - keep

    def _step(self) -> None:
        """One llama_decode: every generating slot's next token first, then prompt
        chunks of starting slots while the batch has room."""
        import llama_cpp
        import numpy as np

        b = self._batch
        n = 0
        outputs: list[tuple[_Slot, int]] = []
        active = [s for s in self._slots if s.reply is not None]
        for slot in active:
            if not slot.reply._todo:
                self._put(n, slot.reply._feed, len(slot.cached), slot.seq, True)
                outputs.append((slot, n))
                n += 1
        chunks: list[tuple[_Slot, int]] = []
        for slot in active:
            todo = slot.reply._todo
            if todo and n < self._n_batch:
                take = min(len(todo), self._n_batch - n)
                for i in range(take):
                    self._put(n + i, todo[i], len(slot.cached) + i, slot.seq, False)
                n += take
                chunks.append((slot, take))
        if n == 0:
            self._flush()
            return
        threads = self._threads if chunks else (self._threads[0], self._threads[0])
        if threads != self._threads_now:
            llama_cpp.llama_set_n_threads(self._ctx.ctx, *threads)
            self._threads_now = threads
        b.n_tokens = n
        self._flush()
        status = llama_cpp.llama_decode(self._ctx.ctx, b)
        if status != 0:
            self._fail(active, status)
            return
        for slot, take in chunks:
            slot.cached.extend(slot.reply._todo[:take])
            del slot.reply._todo[:take]
        for slot, index in outputs:
            reply = slot.reply
            slot.cached.append(reply._feed)
            if reply.closed:
                continue  # freed at the next step
            try:
                token = reply.sampler.sample(self._ctx, index)
            except Exception as e:  # a sampler's own error (a grammar with no way on) ends only its reply
                self._deliver(reply, GenerationError(f"sampling failed: {e}"))
                self._free(slot)
                continue
            if reply.stop_at_eog and self._is_eog(token):
                self._end(slot)
                continue
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx.ctx, index),
                                        shape=(self._n_vocab,)).copy()
            self._deliver(reply, (token, row))
            reply._produced += 1
            reply._feed = token
            if reply._produced >= reply.limit:
                self._end(slot)

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b = self._batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    def _end(self, slot: _Slot) -> None:
        self._deliver(slot.reply, _END)
        self._free(slot)

    def _free(self, slot: _Slot) -> None:
        slot.reply = None

    def _fail(self, active: list[_Slot], status: int) -> None:
        """llama_decode refused the batch: end every reply in it with one line and
        clear their sequences (no state of a half-done batch is reused)."""
        import llama_cpp

        for slot in active:
            self._deliver(slot.reply, GenerationError(
                f"llama.cpp could not decode the batch (llama_decode returned {status})"))
            llama_cpp.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            slot.cached = []
            self._free(slot)

