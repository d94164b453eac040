"""One generation queue for the whole app: the UI and the API both submit here.

The worker takes jobs in the fair order of scheduler.py (round-robin between owners,
first-come first-served within one) and runs one at a time, so a local model is never
driven by two threads. A model that serves several replies at once (a remote engine
with remote_concurrency N: `model.concurrency`) gets up to N jobs at a time, each on a
thread of its own, so the engine batches them. Each job has its own cancel event and
its own event stream, so one user's Stop never stops another's reply. Stop strings,
token counts and speed are measured here, once, for every backend.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from loaders.base import GenerationError, TokenLogprobs
from loaders.context_limit import check_fits
from loaders.errors import describe_exception
from loaders.logprobs import TokenLogprob
from loaders.params import GenerationParams
from webui.errors import ErrorKind, UserError
from webui.runtime.model_manager import LoadedModel, ModelManager
from webui.runtime.scheduler import LOCAL_OWNER, FairQueue
from webui.runtime.stop_strings import StopMatcher

log = logging.getLogger(__name__)

RECENT_STATS = 200  # finished replies whose stats the engine keeps


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prompt_eval_tokens: int = 0  # after reusing the KV cache
    completion_tokens: int = 0
    prompt_seconds: float = 0.0  # request start -> first token
    generation_seconds: float = 0.0  # first token -> last token
    queued_seconds: float = 0.0
    finish_reason: str = "stop"  # "stop" (end of text or a stop string), "length", "cancelled"
    context_length: int = 0  # the model's context when this ran (the stats extension plots its use)
    # Speculative decoding ("" when off): tokens drafted, and those the model kept.
    speculation: str = ""
    draft_tokens: int = 0
    accepted_draft_tokens: int = 0

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_eval_tokens / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generation_tokens_per_second(self) -> float:
        # llama-bench style: the first token is prompt processing's, not generation's.
        n = self.completion_tokens - 1
        return n / self.generation_seconds if n > 0 and self.generation_seconds > 0 else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_draft_tokens / self.draft_tokens if self.draft_tokens else 0.0

    def summary(self) -> str:
        text = (f"{self.completion_tokens} tokens, {self.generation_tokens_per_second:.1f} tok/s; "
                f"prompt {self.prompt_tokens} tokens ({self.prompt_eval_tokens} evaluated, "
                f"{self.prompt_tokens_per_second:.0f} tok/s)")
        if self.speculation:
            text += (f"; {self.speculation}: {self.accepted_draft_tokens} of {self.draft_tokens} drafted tokens "
                     f"accepted ({self.acceptance_rate:.0%})")
        return text


@dataclass(frozen=True)
class Delta:
    text: str
    # With a LogprobsRequest: the tokens this event completes (a stop string may hold
    # text back, so text and tokens need not line up one to one).
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class LogprobsRequest:
    top: int = 0  # likeliest alternatives per token
    prompt: bool = False  # the prompt's tokens first (a completion's echo)
    reply: bool = True  # False: only the prompt's, nothing generated (max_tokens=0)


@dataclass(frozen=True)
class Finished:
    stats: GenerationStats


@dataclass(frozen=True)
class Failed:
    error: UserError  # the very object raised, so each face can read its kind

    @property
    def message(self) -> str:
        return self.error.message


Event = Delta | Finished | Failed


@dataclass
class GenerationJob:
    prompt: str | Sequence[int]
    params: GenerationParams
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.perf_counter)
    # What extensions made of this request's prompt (a webui.extensions.Prompt, or
    # None); a chat reply's modify_output hooks read it when the reply is done.
    extension_prompt: Any = None
    logprobs: LogprobsRequest | None = None
    owner: str = LOCAL_OWNER  # whose request: the queue takes turns between owners
    ran_on: LoadedModel | None = None  # the model that ran it, once it runs (a reply's record reads it)
    _events: queue.SimpleQueue[Event] = field(default_factory=queue.SimpleQueue)
    _ended: threading.Event = field(default_factory=threading.Event)
    _listener: Callable[[], None] | None = None

    def stop(self) -> None:
        self.cancel.set()

    def emit(self, event: Event) -> None:
        self._events.put(event)
        if not isinstance(event, Delta):
            self._ended.set()
        listener = self._listener
        if listener is not None:
            listener()

    def listen(self, listener: Callable[[], None]) -> None:
        """Have `listener` called in the emitting thread after each event (and once now,
        for those already emitted); the reader then takes them with `ready()`. An event
        loop reads a reply this way without a thread of its own blocked in `events()`,
        which was one more thread to wake, and to take the GIL, for every token."""
        self._listener = listener
        listener()

    def ready(self) -> list[Event]:
        """The events emitted so far and not yet taken, without waiting."""
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def events(self) -> Iterator[Event]:
        """Every event, one at a time, ending with Finished or Failed."""
        while True:
            event = self._events.get()
            yield event
            if not isinstance(event, Delta):
                return

    def stream_batches(self) -> Iterator[str | Finished | Failed]:
        """Text in batches: all pieces that arrived while the consumer was busy come
        as one string, so a slow consumer (a browser) never falls behind the model."""
        while True:
            event = self._events.get()
            text = []
            while isinstance(event, Delta):
                text.append(event.text)
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    event = None
                    break
            if text:
                yield "".join(text)
            if event is not None:
                yield event
                return

    def result(self) -> tuple[str, GenerationStats]:
        """Block until done; the whole text and its stats. Raises the job's UserError.

        Sleeps until the job has ended instead of taking events as they come: waking
        this thread for every token cost the model ~8% of its speed on 2 cores
        (measured with bench/generation.py, 2 generation threads)."""
        self._ended.wait()
        parts = []
        while True:
            event = self._events.get_nowait()
            if isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Failed):
                raise event.error
            else:
                return "".join(parts), event.stats


@dataclass
class ExclusiveTask:
    """Work that drives models itself (the quant advisor loads and measures GGUF
    files): it waits its turn in the same queue as replies, so it never runs beside
    one, and replies submitted after it wait for it. The worker calls `run(cancel)`
    even when the task was stopped while queued, so it can record that; the task
    reports its own results and errors."""
    run: Callable[[threading.Event], None]
    cancel: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.cancel.set()


def concurrency_of(model: Any) -> int:
    """How many replies a model serves at once: a remote engine's remote_concurrency,
    the llama.cpp loader's parallel (continuous batching); 1 for the others."""
    n = getattr(model, "concurrency", 1)
    return n if isinstance(n, int) and n > 1 else 1


class GenerationEngine:
    def __init__(self, manager: ModelManager, per_owner_limit: int | None = None):
        self.manager = manager
        self._jobs: FairQueue[GenerationJob | ExclusiveTask | None] = FairQueue(per_owner_limit)
        # Whose request is being submitted, asked in the submitting thread (the app sets
        # the current user's name); a request with no owner of its own gets this.
        self.owner_of: Callable[[], str] = lambda: LOCAL_OWNER
        self._in_flight = 0  # replies running beside each other (a concurrent model's)
        self._in_flight_lock = threading.Lock()
        # The latest finished replies, oldest first (the stats extension plots them).
        self.recent_stats: deque[GenerationStats] = deque(maxlen=RECENT_STATS)
        self._worker = threading.Thread(target=self._run, name="hearth-generation", daemon=True)
        self._worker.start()

    def submit(self, prompt: str | Sequence[int], params: GenerationParams,
               logprobs: LogprobsRequest | None = None, owner: str | None = None) -> GenerationJob:
        """Queue a reply for `owner` (default: owner_of()); raises QueueFull (a
        UserError) when they already have per_owner_limit replies waiting."""
        owner = owner or self.owner_of()
        job = GenerationJob(prompt, params, logprobs=logprobs, owner=owner)
        self._jobs.put(job, owner)
        return job

    def submit_task(self, run: Callable[[threading.Event], None],
                    cancel: threading.Event | None = None) -> ExclusiveTask:
        task = ExclusiveTask(run, cancel or threading.Event())
        self._jobs.put_barrier(task)
        return task

    @property
    def per_owner_limit(self) -> int | None:
        """The most replies one owner may have waiting (None: no limit but the API's max_queue)."""
        return self._jobs.per_owner_limit

    @per_owner_limit.setter
    def per_owner_limit(self, limit: int | None) -> None:
        self._jobs.per_owner_limit = limit

    @property
    def last_stats(self) -> GenerationStats | None:
        """The latest finished reply's stats."""
        return self.recent_stats[-1] if self.recent_stats else None

    @property
    def queue_length(self) -> int:
        return len(self._jobs)

    def queued_for(self, owner: str) -> int:
        """How many of `owner`'s replies wait in the queue."""
        return self._jobs.queued_for(owner)

    def close(self) -> None:
        """Stop the worker once everything queued so far has run."""
        self._jobs.put_barrier(None)

    def _run(self) -> None:
        while True:
            job, barrier = self._jobs.take()
            if barrier:
                if job is None:
                    return
                try:
                    job.run(job.cancel)
                except Exception:  # the task's own bug must not kill the queue
                    log.exception("a queued task failed")
                continue
            if job.cancel.is_set():
                job.emit(Finished(GenerationStats(finish_reason="cancelled")))
                continue
            try:
                with self.manager.use() as loaded:
                    slots = concurrency_of(loaded.model)
                    if slots == 1:
                        self._finish(job, loaded)
                    else:
                        self._run_beside(job, loaded, slots)
            except UserError as e:  # no model loaded
                log.info("reply refused (%s): %s", e.kind.value, e)
                job.emit(Failed(e))

    def _run_beside(self, first: GenerationJob, loaded: LoadedModel, slots: int) -> None:
        """Run `first` and the replies queued after it, up to `slots` at once, each on a
        thread of its own, while holding the model (an unload waits for them all).
        Returns when none is running and the next item cannot start beside them."""
        self._start(first, loaded)
        while True:
            taken = self._jobs.take(ready=lambda item, barrier: not barrier and 0 < self._in_flight < slots,
                                    give_up=lambda: self._in_flight == 0)
            if taken is None:
                return
            job = taken[0]
            if job.cancel.is_set():
                job.emit(Finished(GenerationStats(finish_reason="cancelled")))
            else:
                self._start(job, loaded)

    def _start(self, job: GenerationJob, loaded: LoadedModel) -> None:
        with self._in_flight_lock:
            self._in_flight += 1

        def run() -> None:
            try:
                self._finish(job, loaded)
            finally:
                with self._in_flight_lock:
                    self._in_flight -= 1
                self._jobs.wake()

        threading.Thread(target=run, name="hearth-generation-reply", daemon=True).start()

    def _finish(self, job: GenerationJob, loaded: LoadedModel) -> None:
        """Generate one reply and end its event stream with Finished or Failed."""
        try:
            stats = self._generate(job, loaded)
        except UserError as e:
            log.info("reply refused (%s): %s", e.kind.value, e)
            job.emit(Failed(e))
        except Exception as e:  # a backend bug must not kill the queue
            log.exception("generation failed")
            internal = UserError(f"generation failed: {describe_exception(e)}", kind=ErrorKind.INTERNAL)
            internal.__cause__ = e  # whoever re-raises it (result()) shows the real traceback
            job.emit(Failed(internal))
        else:
            if stats.completion_tokens:
                self.recent_stats.append(stats)
            job.emit(Finished(stats))

    def _generate(self, job: GenerationJob, loaded: LoadedModel) -> GenerationStats:
        start = time.perf_counter()
        stats = GenerationStats(queued_seconds=start - job.submitted_at)
        model = loaded.model  # the caller holds it (manager.use()) while this runs
        job.ran_on = loaded
        ids = model.encode(job.prompt) if isinstance(job.prompt, str) else list(job.prompt)
        stats.prompt_tokens = len(ids)
        if not ids:
            raise GenerationError("the prompt is empty: type something first")
        stats.context_length = model.context_length
        limit = min(job.params.max_new_tokens, check_fits(len(ids), model.context_length))
        want = job.logprobs
        if want is not None:
            if not isinstance(model, TokenLogprobs):
                raise UserError(f"logprobs are not available with the {loaded.loader} loader",
                                kind=ErrorKind.INVALID)
            if want.prompt:
                job.emit(Delta("", tuple(model.prompt_logprobs(ids, want.top))))
            if not want.reply:
                stats.finish_reason = "length"
                return stats
        matcher = StopMatcher(job.params.stop)
        first_at = None
        stream = model.generate(ids, job.params, job.cancel)
        try:
            for piece in stream:
                if first_at is None:
                    first_at = time.perf_counter()
                    stats.prompt_eval_tokens = model.last_prompt_eval_tokens
                stats.completion_tokens += 1
                token = (model.token_logprobs(want.top),) if want is not None else ()
                text = matcher.feed(piece)
                if text or (token and not matcher.stopped):
                    job.emit(Delta(text, () if matcher.stopped else token))
                if matcher.stopped:
                    stats.finish_reason = "stop"
                    break
                if job.cancel.is_set():
                    stats.finish_reason = "cancelled"
                    break
            else:
                if job.cancel.is_set():
                    stats.finish_reason = "cancelled"
                elif stats.completion_tokens >= limit:
                    stats.finish_reason = "length"
                else:
                    stats.finish_reason = "stop"
        finally:
            stream.close()
        tail = matcher.flush()
        if tail:
            job.emit(Delta(tail))
        speculation = getattr(model, "last_speculation", None)  # only llama.cpp has one
        if speculation is not None:
            stats.speculation = speculation.method
            stats.draft_tokens = speculation.drafted
            stats.accepted_draft_tokens = speculation.accepted
        end = time.perf_counter()
        if first_at is not None:
            stats.prompt_seconds = first_at - start
            stats.generation_seconds = end - first_at
        return stats
