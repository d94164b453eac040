"""The quant advisor: measure several GGUF files of a model on this machine (perplexity
on a built-in text, KL divergence against a reference file, prompt and generation
speed, memory) and lay the numbers out in one table, so a user can choose a
quantization with numbers from their own machine.

A run takes its place in the generation queue like a reply (the engine's
`submit_task`), so it never drives llama.cpp beside a reply and replies asked for
after it wait for it. It loads each file itself, one at a time, and frees it before
the next; the chat model stays loaded. Stop ends it at the next chunk or token and
keeps the rows already measured. The measuring itself is loaders/quant_quality.py.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from loaders import quant_quality
from loaders.base import LoadError
from loaders.errors import describe_exception
from loaders.fields import setting
from loaders.formats import CheckpointFormat
from loaders.hf_common import model_format
from loaders.option_limits import MAX_THREADS
from loaders.quant_quality import FileFacts, FileMeasurement, ReferenceDistributions
from webui.errors import ErrorKind, UserError
from webui.modelfiles import fit
from webui.modelfiles.advisor_text import ADVISOR_TEXT
from webui.modelfiles.local import estimate_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdvisorSettings:
    n_ctx: int = setting(512, "Perplexity chunk length in tokens (llama-perplexity's default is 512; the second half of each chunk is scored).", minimum=16, maximum=8192, ui_maximum=4096, step=16, flag="--ctx")
    threads: int = setting(0, "CPU threads for every measurement (0 = all CPUs, as llama-bench uses).", minimum=0, maximum=MAX_THREADS, ui_maximum=256, step=1)
    prompt_tokens: int = setting(512, "Prompt-processing test: tokens decoded as one batch (llama-bench's pp512).", minimum=1, maximum=8192, ui_maximum=4096, step=1, flag="--pp")
    generation_tokens: int = setting(128, "Generation test: tokens decoded one at a time (llama-bench's tg128).", minimum=1, maximum=4096, ui_maximum=1024, step=1, flag="--tg")


class AdvisorError(UserError):
    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class Candidate:
    """One file the user chose, and what its header says (None: not a GGUF file)."""
    label: str
    path: Path
    facts: FileFacts | None
    size_bytes: int
    problem: str = ""  # why it cannot be measured, one line


@dataclass
class AdviceRow:
    label: str
    size_bytes: int
    quantization: str | None = None
    bits_per_weight: float | None = None
    is_reference: bool = False
    measured: FileMeasurement | None = None
    note: str = ""


@dataclass(frozen=True)
class Progress:
    label: str          # the file being measured ("" while queued or when done)
    index: int          # 0-based, among the files to measure
    total: int
    step: str           # a file's step ("loading", "perplexity, chunk 2 of 3", "pp512", "tg128", "done"),
                        # or without a label the run's state ("queued", "done", "stopped", "failed")
    fraction: float     # of the whole run

    def line(self) -> str:
        if not self.label:  # the run as a whole
            return {"queued": "waiting for the replies ahead of it in the queue",
                    "done": f"done: {self.total} file(s)",
                    "stopped": "stopped; the rows measured so far are kept",
                    "failed": "failed"}[self.step]
        return f"{self.index + 1}/{self.total} {self.label}: {self.step} · {self.fraction * 100:.0f}%"


HEADERS = ["File", "Quant", "Bits/weight", "Size", "PPL", "KL vs ref", "Same top token", "pp t/s",
           "tg t/s", "Memory", "Note"]


def table_headers(settings: AdvisorSettings) -> list[str]:
    """HEADERS with the speed columns named after their test sizes, as llama-bench does."""
    out = list(HEADERS)
    out[7], out[8] = f"pp{settings.prompt_tokens} t/s", f"tg{settings.generation_tokens} t/s"
    return out


def _number(value: float | None, fmt: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def row_cells(row: AdviceRow) -> list[str]:
    m = row.measured
    quant = (row.quantization or ("?" if row.size_bytes else "")) + (" (ref)" if row.is_reference else "")
    cells = [row.label, quant, _number(row.bits_per_weight, ".2f"),
             fit.human_bytes(row.size_bytes) if row.size_bytes else ""]
    if m is None:
        return [*cells, "", "", "", "", "", "", row.note]
    memory = fit.human_bytes(m.rss_growth_bytes) if m.rss_growth_bytes is not None else "?"
    if m.kv_bytes is not None:
        memory += f" (KV {fit.human_bytes(m.kv_bytes)} at {m.n_ctx})"
    kl = "0 (reference)" if row.is_reference else _number(m.mean_kl, ".4f")
    agree = _number(m.top1_agreement * 100 if m.top1_agreement is not None else None, ".1f")
    return [*cells, _number(m.perplexity, ".3f"), kl, agree + "%" if agree else "",
            _number(m.prompt_tokens_per_second, ".1f"), _number(m.generation_tokens_per_second, ".1f"),
            memory, row.note]


# --- choosing the files ---------------------------------------------------------------------

def candidate(label: str, path: Path) -> Candidate:
    """A chosen file with its header facts; a file that is not GGUF is kept with a note
    (the table says so), a missing one is an error."""
    path = Path(path)
    if not path.exists():
        raise AdvisorError(f"no such model: {label}", kind=ErrorKind.NOT_FOUND)
    found = model_format(path) if path.is_file() else None
    if found is not CheckpointFormat.GGUF:
        what = found.label if found is not None else ("a folder" if path.is_dir() else "not a model file")
        return Candidate(label, path, None, 0, f"not a GGUF file ({what}); the advisor measures GGUF files")
    try:
        facts = quant_quality.file_facts(path)
    except LoadError as e:
        return Candidate(label, path, None, path.stat().st_size, e.message)
    return Candidate(label, path, facts, path.stat().st_size)


def plan(files: Sequence[Candidate], reference: Candidate | None) -> list[Candidate]:
    """The files in measuring order (the reference first), or a one-line error."""
    if not files and reference is None:
        raise AdvisorError("choose at least one GGUF file to measure")
    if reference is None:
        return list(files)
    if reference.facts is None:
        raise AdvisorError(f"the reference {reference.label} cannot be measured: {reference.problem}")
    ref_id = reference.facts.identity
    for f in files:
        if f.facts is None or f.facts.identity == ref_id:
            continue
        raise AdvisorError(f"{f.label} is another model than the reference {reference.label} "
                           f"({_describe_identity(f.facts.identity)} vs {_describe_identity(ref_id)}); "
                           "KL divergence compares quantizations of one model")
    return [reference] + [f for f in files if f.path.resolve() != reference.path.resolve()]


def _describe_identity(identity: tuple) -> str:
    arch, layers, width, vocab = identity
    return f"{arch}, {layers} layers, width {width}, {vocab} tokens"


# --- a run ------------------------------------------------------------------------------

class TaskQueue(Protocol):
    """What the advisor needs of the generation engine: one exclusive turn in its queue."""

    def submit_task(self, run: Callable[[threading.Event], None], cancel: threading.Event | None = None): ...


@dataclass
class AdvisorRun:
    files: list[Candidate]
    reference: Candidate | None
    settings: AdvisorSettings
    text: str = ADVISOR_TEXT
    on_progress: Callable[[Progress], None] | None = None
    rows: list[AdviceRow] = field(default_factory=list)
    progress: Progress | None = None
    error: str = ""
    state: str = "queued"   # queued, running, done, stopped, failed
    cancel: threading.Event = field(default_factory=threading.Event)
    started_at: float | None = None   # time.perf_counter() when its turn came
    finished_at: float | None = None  # and when it ended
    _done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._report(Progress("", 0, len(self.files), "queued", 0.0))

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def stop(self) -> None:
        self.cancel.set()

    def cells(self) -> list[list[str]]:
        return [row_cells(r) for r in list(self.rows)]

    def headers(self) -> list[str]:
        return table_headers(self.settings)

    def _report(self, progress: Progress) -> None:
        self.progress = progress
        if self.on_progress is not None:
            self.on_progress(progress)

    def execute(self, cancel: threading.Event | None = None) -> None:
        """Measure every file in order; the generation worker calls this when the
        run's turn comes (the command line calls it directly)."""
        cancel = cancel or self.cancel
        self.started_at = time.perf_counter()
        self.state = "running"
        try:
            self._measure_all(cancel)
            self.state = "stopped" if cancel.is_set() else "done"
        except UserError as e:
            self.state, self.error = "failed", e.message
        except Exception as e:  # a bug must not leave the UI polling a run that never ends
            log.exception("the quant advisor failed")
            self.state, self.error = "failed", f"the quant advisor failed: {describe_exception(e)}"
        finally:
            total = len(self.files)
            self._report(Progress("", total, total, self.state, 1.0 if self.state == "done" else
                                  (self.progress.fraction if self.progress else 0.0)))
            self.finished_at = time.perf_counter()
            self._done.set()

    def _measure_all(self, cancel: threading.Event) -> None:
        s = self.settings
        reference: ReferenceDistributions | None = None
        total = len(self.files)
        for i, f in enumerate(self.files):
            if cancel.is_set():
                return
            is_ref = self.reference is not None and i == 0
            row = AdviceRow(f.label, f.size_bytes, f.facts.quantization if f.facts else None,
                            f.facts.bits_per_weight if f.facts else None, is_ref)
            if f.facts is None:
                row.note = f"not measured: {f.problem}"
                self.rows.append(row)
                continue
            too_big = _would_not_fit(f, max(s.n_ctx, s.prompt_tokens, s.generation_tokens + 1))
            if too_big:
                row.note = too_big
                self.rows.append(row)
                if is_ref:
                    return self._skip_rest("the reference could not be measured")
                continue

            def step(what: str, fraction: float, i=i, f=f) -> None:
                self._report(Progress(f.label, i, total, what, (i + fraction) / total))

            try:
                m = quant_quality.measure_file(
                    f.path, self.text, n_ctx=s.n_ctx, threads=s.threads, prompt_tokens=s.prompt_tokens,
                    generation_tokens=s.generation_tokens, reference=reference, keep_reference=is_ref,
                    cancel=cancel, on_step=step)
            except UserError as e:
                row.note = f"not measured: {e.message}"
                self.rows.append(row)
                if is_ref:
                    return self._skip_rest("the reference could not be measured")
                continue
            if m is None:  # stopped in the middle of this file: its row is not kept
                return
            if is_ref:
                reference = m.reference
            row.measured = m
            self.rows.append(row)

    def _skip_rest(self, why: str) -> None:
        for f in self.files[1:]:
            self.rows.append(AdviceRow(f.label, f.size_bytes, f.facts.quantization if f.facts else None,
                                       f.facts.bits_per_weight if f.facts else None, note=f"not measured: {why}"))


def _would_not_fit(f: Candidate, n_ctx: int) -> str:
    """A one-line reason when this file and its context do not fit in the RAM free now
    (beside the chat model, which stays loaded); "" when it fits or cannot be told."""
    est = estimate_for(f.path, n_ctx)
    if est is None:
        return ""
    free = fit.detect_machine().free_ram_bytes
    if est.total_bytes <= free:
        return ""
    return (f"not measured: needs ≈{fit.human_bytes(est.total_bytes)} at {n_ctx} tokens, "
            f"only {fit.human_bytes(free)} of RAM is free")


# --- the app's one advisor ------------------------------------------------------------------

class Advisor:
    """Starts runs in the generation queue, one at a time, and remembers the latest so
    every browser sees (and can stop) the same run."""

    def __init__(self, tasks: TaskQueue):
        self._tasks = tasks
        self._lock = threading.Lock()
        self.current: AdvisorRun | None = None

    def start(self, files: Sequence[tuple[str, Path]], reference: tuple[str, Path] | None = None,
              settings: AdvisorSettings | None = None, text: str | None = None,
              on_progress: Callable[[Progress], None] | None = None) -> AdvisorRun:
        run = prepare(files, reference, settings or AdvisorSettings(), text, on_progress)
        with self._lock:
            if self.current is not None and not self.current.done:
                raise AdvisorError("the quant advisor is already running: wait for it, or stop it",
                                   kind=ErrorKind.CONFLICT)
            self.current = run
            self._tasks.submit_task(run.execute, run.cancel)
        return run


def prepare(files: Sequence[tuple[str, Path]], reference: tuple[str, Path] | None = None,
            settings: AdvisorSettings | None = None, text: str | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> AdvisorRun:
    """A run over `files` (label, path), checked (one-line errors), not yet started;
    `text` replaces the built-in text (the tests use a short one)."""
    chosen = [candidate(label, path) for label, path in files]
    ref = candidate(*reference) if reference is not None else None
    return AdvisorRun(plan(chosen, ref), ref, settings or AdvisorSettings(), text or ADVISOR_TEXT, on_progress)
