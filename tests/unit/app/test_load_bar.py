"""The command line's load bar: redrawn in place on a terminal, a few lines in a log."""
from __future__ import annotations

import io

from webui.app.load_bar import LoadBar, load_bar, render
from webui.runtime.load_progress import LOADED, STARTING, LoadReport


def reports() -> list[LoadReport]:
    out = [LoadReport("m", 0.0, STARTING, 0.2)]
    out += [LoadReport("m", i / 20, "reading weights", 0.2 + i / 10, i / 10) for i in range(1, 21)]
    return out + [LoadReport("m", 1.0, LOADED, 2.5, 2.3, done=True)]


def test_the_bar_shows_the_fraction_the_phase_and_the_time_left():
    line = render(LoadReport("m", 0.25, "reading weights", 4.0, 3.0))
    assert line == "hearth: loading m [######..................]  25% reading weights, about 9.0 s left"


def test_a_terminal_gets_one_line_redrawn_in_place():
    out = io.StringIO()
    bar = LoadBar(out, tty=True)
    for report in reports():
        bar(report)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.rstrip().endswith("100% loaded, took 2.5 s")
    assert text.count("\r") == len(reports())
    # a shorter line blanks what is left of the longer one before it
    assert all(len(part) >= len(render(reports()[1])) for part in text.rstrip("\n").split("\r")[2:])


def test_a_log_gets_a_line_at_the_start_each_quarter_and_the_end():
    out = io.StringIO()
    bar = LoadBar(out, tty=False)
    for report in reports():
        bar(report)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split("] ")[1].split("%")[0].strip() for line in lines] == ["0", "25", "50", "75", "100", "100"]
    assert lines[-1].endswith("loaded, took 2.5 s")


def test_a_failed_load_ends_the_line_drawn_in_place():
    out = io.StringIO()
    with load_bar(out) as bar:  # a stream without a file descriptor is written to directly
        bar._tty = True
        bar(reports()[3])
    assert out.getvalue().startswith("\rhearth: loading m") and out.getvalue().endswith("\n")
