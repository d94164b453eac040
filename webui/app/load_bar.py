"""The command line's view of a model load: a bar on stderr with the time left,
redrawn in place on a terminal, a few plain lines in a log or a pipe."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from webui.runtime.load_progress import LoadReport

BAR_WIDTH = 24
# Without a terminal each line stays in the log: one at the start, one per quarter
# reached, one when loaded.
PLAIN_STEPS = 4


class LoadBar:
    """A `LoadListener` that draws each report on `out`."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._width = 0  # of the line last drawn in place, to blank its leftovers
        self._step = -1  # the last quarter written as a plain line

    def __call__(self, report: LoadReport) -> None:
        if self._tty:
            line = render(report)
            self._out.write("\r" + line.ljust(self._width) + ("\n" if report.done else ""))
            self._width = 0 if report.done else len(line)
        else:
            step = PLAIN_STEPS + 1 if report.done else int(report.fraction * PLAIN_STEPS)
            if step == self._step:
                return
            self._step = step
            self._out.write(render(report) + "\n")
        self._out.flush()

    def abandon(self) -> None:
        """End a line drawn in place that a failed load left unfinished."""
        if self._tty and self._width:
            self._out.write("\n")
            self._out.flush()
            self._width = 0


def render(report: LoadReport) -> str:
    """'hearth: loading NAME [#########...............]  38% reading weights, about 1.2 s left'"""
    filled = round(report.fraction * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return (f"hearth: loading {report.model} [{bar}] {report.fraction:4.0%} {report.phase}, "
            f"{report.time_left_text()}")


@contextmanager
def load_bar(stream: TextIO | None = None) -> Iterator[LoadBar]:
    """A LoadBar on `stream` (stderr) for the length of the block.

    It writes to a duplicate of the stream's file descriptor: llama-cpp-python points
    descriptor 2 at /dev/null while it reads a model (to silence llama.cpp's log),
    which would swallow a bar written to stderr itself."""
    stream = sys.stderr if stream is None else stream
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a stream with no descriptor (a test's buffer)
        out, owned = stream, False
    else:
        stream.flush()
        out, owned = os.fdopen(os.dup(fd), "w", encoding="utf-8", errors="replace"), True
    bar = LoadBar(out, tty=out.isatty())
    try:
        yield bar
    finally:
        bar.abandon()
        if owned:
            out.close()
