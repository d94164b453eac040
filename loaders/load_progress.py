"""How far a model load has got, told by the loader while it loads.

`Loader.load(path, options, progress)` calls `progress(fraction, phase)`: `fraction`
is the share of the load done (0.0 to 1.0), `phase` a few words on what it is doing.
The caller (webui/runtime/load_progress.py) adds the clock, keeps the fraction from
going back, and says 0.0 before and 1.0 after, so a backend that can tell nothing in
between (GPTQModel, a remote engine) need not call it at all.

What the backends can tell:
- llama.cpp: its model parameters' progress_callback, once per tensor read (273 calls
  for SmolLM2-135M, memory-mapped or not), as the share of tensor bytes read.
- Transformers: its "Loading weights" bar (transformers.utils.logging's tqdm, one step
  per weight tensor), seen through the documented `set_tqdm_hook`.
- ExLlamaV2: load_autosplit's callback, once per module.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

LoadProgress = Callable[[float, str], None]

READING_WEIGHTS = "reading weights"
# Transformers' bars over the weights: per tensor (5.x), per shard (4.x). Other bars
# that may run inside from_pretrained are not the load's progress and are left alone.
_WEIGHT_BARS = ("Loading weights", "Loading checkpoint shards")


def no_progress(fraction: float, phase: str) -> None:
    """The default `progress`: nobody is watching."""


def guarded(progress: LoadProgress) -> LoadProgress:
    """`progress` that never raises: a watcher that fails (a closed browser tab, a
    broken pipe) must not fail the load it watches."""
    def report(fraction: float, phase: str) -> None:
        try:
            progress(fraction, phase)
        except Exception:
            log.exception("a load-progress watcher failed; the load goes on")
    return report


def llama_callback(progress: LoadProgress):
    """A llama.cpp `llama_progress_callback` that reports to `progress`.

    The caller must keep the returned object referenced until the load ends: it owns
    the C thunk llama.cpp calls, and ctypes frees that with the object."""
    import llama_cpp

    report = guarded(progress)

    def on_progress(fraction: float, _user_data) -> bool:
        report(float(fraction), READING_WEIGHTS)
        return True  # False would abort the load

    return llama_cpp.llama_progress_callback(on_progress)


class _ReportingBar:
    """A Transformers tqdm bar that also reports each finished step to `progress`."""

    def __init__(self, bar: Any, total: int, progress: LoadProgress) -> None:
        self._bar, self._total, self._progress = bar, total, progress

    def __iter__(self) -> Iterator[Any]:
        self._progress(0.0, READING_WEIGHTS)  # reading begins: the time-left estimate counts from here
        done = 0
        for item in self._bar:
            yield item  # the caller loads this tensor before asking for the next
            done += 1
            self._progress(min(done / self._total, 1.0), READING_WEIGHTS)

    def __enter__(self) -> _ReportingBar:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._bar.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bar, name)


_HOOK_LOCK = threading.Lock()


@contextmanager
def transformers_weight_progress(progress: LoadProgress) -> Iterator[None]:
    """While inside, Transformers' weight-loading bar in this thread reports to
    `progress`. The hook is process-wide, so it is set under a lock and only wraps
    bars made by the thread that set it; any hook set before is kept and chained."""
    from transformers.utils import logging as hf_logging

    owner = threading.get_ident()
    report = guarded(progress)

    with _HOOK_LOCK:
        previous = hf_logging.set_tqdm_hook(None)

        def hook(factory, args: tuple, kwargs: dict):
            bar = previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)
            if threading.get_ident() != owner or not str(kwargs.get("desc", "")).startswith(_WEIGHT_BARS):
                return bar
            items = args[0] if args else kwargs.get("iterable")
            total = kwargs.get("total") or (len(items) if hasattr(items, "__len__") else 0)
            return _ReportingBar(bar, total, report) if items is not None and total else bar

        hf_logging.set_tqdm_hook(hook)
        try:
            yield
        finally:
            hf_logging.set_tqdm_hook(previous)
