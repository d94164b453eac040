"""The load-progress arithmetic: the time-left estimate, the fraction that never goes
back, and which of a loader's many reports reach a face."""
from __future__ import annotations

import pytest

from webui.runtime.load_progress import LOADED, STARTING, LoadReport, LoadTracker, format_seconds


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_time_left_is_the_time_so_far_scaled_to_what_is_left():
    report = LoadReport("m", 0.25, "reading weights", elapsed=9.0, reading=3.0)
    assert report.seconds_left == pytest.approx(9.0)  # 3 s for a quarter: 9 s for the other three
    assert report.time_left_text() == "about 9.0 s left"
    assert report.summary() == "Loading m: 25% (reading weights), about 9.0 s left"


def test_time_left_is_unknown_before_anything_is_done_and_zero_when_loaded():
    assert LoadReport("m", 0.0, STARTING, elapsed=2.0).seconds_left is None
    assert LoadReport("m", 0.0, STARTING, elapsed=2.0).time_left_text() == "time left unknown"
    loaded = LoadReport("m", 1.0, LOADED, elapsed=12.5, reading=12.0, done=True)
    assert loaded.seconds_left == 0.0 and loaded.time_left_text() == "took 12 s"


@pytest.mark.parametrize("seconds, text", [(0.04, "0.0 s"), (9.94, "9.9 s"), (42.4, "42 s"), (89.4, "89 s"),
                                           (90, "1 min 30 s"), (3725, "62 min 05 s")])
def test_seconds_read_as_a_person_would_say_them(seconds, text):
    assert format_seconds(seconds) == text


def test_the_estimate_counts_from_when_reading_began_not_from_the_imports():
    clock, told = Clock(), []
    tracker = LoadTracker("m", told.append, clock=clock)
    tracker.start()
    clock.now += 17.0  # importing the library, building the model: no fraction yet
    tracker(0.0, "reading weights")
    clock.now += 1.0
    tracker(0.5, "reading weights")
    last = told[-1]
    assert last.elapsed == pytest.approx(18.0) and last.reading == pytest.approx(1.0)
    assert last.seconds_left == pytest.approx(1.0)


def test_the_fraction_never_goes_back_and_stays_within_0_and_1():
    clock, told = Clock(), []
    tracker = LoadTracker("m", told.append, clock=clock)
    for fraction in (0.5, 0.2, float("nan"), 7.0, -1.0):
        clock.now += 1
        tracker(fraction, "reading weights")
    assert [r.fraction for r in told] == [0.5, 1.0]  # 0.2, nan and -1 change nothing a person sees
    assert not told[-1].done  # a backend's own 100% is not yet a loaded model
    tracker.finish()
    assert told[-1].done and told[-1].phase == LOADED and told[-1].fraction == 1.0


def test_reports_reach_the_listener_per_percent_or_new_phase_not_per_tensor():
    told = []
    tracker = LoadTracker("m", told.append, clock=Clock())
    tracker.start()
    for i in range(1, 273):  # llama.cpp calls back once per tensor
        tracker(i / 272, "reading weights")
    tracker.finish()
    fractions = [r.fraction for r in told]
    assert 90 <= len(told) <= 102
    assert fractions == sorted(fractions)
    assert all(b - a >= 0.01 for a, b in zip(fractions[1:-2], fractions[2:-1], strict=True))
    assert [r.phase for r in told[:2]] == [STARTING, "reading weights"] and told[-1].done


def test_latest_reads_the_clock_now_for_a_face_that_polls():
    clock = Clock()
    tracker = LoadTracker("m", clock=clock)
    tracker(0.0, "reading weights")
    tracker(0.4, "reading weights")
    clock.now += 2.0
    latest = tracker.latest
    assert latest.fraction == 0.4 and latest.elapsed == pytest.approx(2.0)


def test_a_failing_listener_does_not_fail_the_load(caplog):
    def broken(report: LoadReport) -> None:
        raise BrokenPipeError("the terminal went away")

    tracker = LoadTracker("m", broken, clock=Clock())
    tracker.start()
    tracker(0.5, "reading weights")
    tracker.finish()
    assert tracker.latest.done
    assert "listener failed" in caplog.text
