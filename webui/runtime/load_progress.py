"""A model load as the faces show it: how far it has got, for how long, and about how
long is left.

The loader reports (fraction, phase) as it reads (loaders/load_progress.py); a
`LoadTracker` adds the clock, keeps the fraction from going back, drops reports that
change nothing a person could see, and hands each `LoadReport` to the face's listener
(the Model tab's progress bar, the command line's bar).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

STARTING = "starting"
LOADED = "loaded"
# A report is passed on when the fraction moves by a whole percent, the phase changes,
# or the load ends: llama.cpp calls back once per tensor (273 times for a 135M model).
_MIN_STEP = 0.01


@dataclass(frozen=True)
class LoadReport:
    model: str
    fraction: float  # 0.0 to 1.0
    phase: str
    elapsed: float  # seconds since the load began
    # Seconds since the fraction last stood at 0, when the backend began to read. The
    # estimate counts from there: loading Transformers spent 17 s importing torch
    # before its first weight (272 weights then took 0.1 s), and counting those 17 s
    # said "51 s left" at 26%.
    reading: float = 0.0
    done: bool = False  # the model is loaded (a backend's own 100% may precede more setup)

    @property
    def seconds_left(self) -> float | None:
        """Time left if the rest goes as fast as the part done so far; unknown (None)
        until some of it is done."""
        if self.done:
            return 0.0
        if self.fraction <= 0:
            return None
        return self.reading * (1 - self.fraction) / self.fraction

    def time_left_text(self) -> str:
        left = self.seconds_left
        if self.done:
            return f"took {format_seconds(self.elapsed)}"
        return "time left unknown" if left is None else f"about {format_seconds(left)} left"

    def summary(self) -> str:
        """One line: 'Loading NAME: 42% (reading weights), about 3 s left'."""
        return (f"Loading {self.model}: {self.fraction:.0%} ({self.phase}), {self.time_left_text()}")


def format_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s"


LoadListener = Callable[[LoadReport], None]


class LoadTracker:
    """The `progress` callable a loader gets (fraction, phase); tells `listener`.

    A listener that raises is logged and ignored: a closed browser tab or a broken
    terminal must not fail the load it was watching."""

    def __init__(self, model: str, listener: LoadListener | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._model = model
        self._listener = listener
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._latest = LoadReport(model, 0.0, STARTING, 0.0)
        self._told: LoadReport | None = None
        self._reading_since = self._start  # when the fraction last stood at 0

    def _report(self, fraction: float, phase: str, done: bool = False) -> LoadReport:
        now = self._clock()
        if fraction <= 0:
            self._reading_since = now
        return LoadReport(self._model, fraction, phase, now - self._start, now - self._reading_since, done)

    @property
    def latest(self) -> LoadReport:
        """The newest report, with the clock read now (for a face that polls)."""
        with self._lock:
            return self._report(self._latest.fraction, self._latest.phase, self._latest.done)

    def start(self) -> None:
        self(0.0, STARTING)

    def finish(self) -> None:
        self._tell(1.0, LOADED, done=True)

    def __call__(self, fraction: float, phase: str) -> None:
        self._tell(fraction, phase)

    def _tell(self, fraction: float, phase: str, done: bool = False) -> None:
        with self._lock:
            fraction = float(fraction) if math.isfinite(fraction) else 0.0
            fraction = min(max(fraction, self._latest.fraction), 1.0)  # never back
            report = self._report(fraction, phase, done)
            self._latest = report
            told = self._told
            if told is not None and phase == told.phase and fraction - told.fraction < _MIN_STEP and not done:
                return
            self._told = report
        if self._listener is not None:
            try:
                self._listener(report)
            except Exception:
                log.exception("a load-progress listener failed; the load goes on")
