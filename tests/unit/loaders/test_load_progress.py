"""Transformers' weight-loading bar, seen through its documented tqdm hook: each
finished step is reported, and nothing else is touched. The bar here is Transformers'
own tqdm factory, iterated the way from_pretrained iterates it."""
from __future__ import annotations

import inspect
import threading

import pytest
from transformers.utils import logging as hf_logging

import loaders
from loaders.load_progress import READING_WEIGHTS, no_progress, transformers_weight_progress


@pytest.mark.parametrize("name", loaders.names())
def test_every_loader_takes_a_progress_watcher_that_defaults_to_none(name):
    # The model manager passes one to every backend; a backend that cannot tell how far
    # it has got takes it all the same.
    parameters = inspect.signature(loaders.get(name).load).parameters
    assert list(parameters)[:3] == ["path", "options", "progress"]
    assert parameters["progress"].default is no_progress


def test_the_weights_bar_reports_each_finished_step_then_the_hook_is_gone():
    told = []
    with transformers_weight_progress(lambda f, phase: told.append((round(f, 2), phase))):
        loaded = list(hf_logging.tqdm({f"w{i}": i for i in range(4)}.items(), desc="Loading weights"))
    assert loaded == [(f"w{i}", i) for i in range(4)]
    assert told == [(0.0, READING_WEIGHTS), (0.25, READING_WEIGHTS), (0.5, READING_WEIGHTS),
                    (0.75, READING_WEIGHTS), (1.0, READING_WEIGHTS)]
    assert hf_logging.set_tqdm_hook(None) is None  # nothing left behind


def test_other_bars_and_other_threads_are_not_the_loads_progress():
    told = []
    with transformers_weight_progress(lambda f, phase: told.append(f)):
        assert list(hf_logging.tqdm(range(3), desc="Fetching files")) == [0, 1, 2]
        elsewhere = threading.Thread(target=lambda: list(hf_logging.tqdm(range(3), desc="Loading weights")))
        elsewhere.start()
        elsewhere.join()
    assert told == []


def test_a_hook_set_before_is_kept_and_restored():
    made = []

    def earlier(factory, args, kwargs):
        made.append(kwargs.get("desc"))
        return factory(*args, **kwargs)

    hf_logging.set_tqdm_hook(earlier)
    try:
        told = []
        with transformers_weight_progress(lambda f, phase: told.append(f)):
            list(hf_logging.tqdm(range(2), desc="Loading weights"))
        assert made == ["Loading weights"] and told == [0.0, 0.5, 1.0]
        assert hf_logging.set_tqdm_hook(earlier) is earlier
    finally:
        hf_logging.set_tqdm_hook(None)


def test_a_failing_watcher_does_not_break_the_load():
    def broken(fraction, phase):
        raise RuntimeError("the browser tab closed")

    with transformers_weight_progress(broken):
        assert list(hf_logging.tqdm(range(3), desc="Loading weights")) == [0, 1, 2]
