"""Counting tokens does not wait behind someone else's reply, and an unload does not
free a model under a read that is still using it."""
from __future__ import annotations

import threading
import time

from loaders.params import GenerationParams
from webui.runtime.generation import Delta
from webui.runtime.model_manager import ModelManager


def test_counting_tokens_does_not_wait_for_a_running_reply(hearth):
    long_reply = GenerationParams(temperature=0, max_new_tokens=1500, ignore_eos=True)
    job = hearth.complete("Once upon a time", long_reply)
    try:
        events = job.events()
        assert isinstance(next(events), Delta)  # the worker holds the model now
        start = time.perf_counter()
        count = hearth.count_tokens("How many tokens is this sentence?")
        waited = time.perf_counter() - start
        assert count > 3
        assert waited < 1.0, f"count_tokens waited {waited:.2f}s behind the running reply"
    finally:
        job.stop()
        job.result()


def test_an_unload_waits_for_a_read_that_is_using_the_model(default_model):
    models = ModelManager()
    models.load(default_model, "llama.cpp", {"n_ctx": 256})
    unloaded = threading.Event()
    with models.borrow() as loaded:
        thread = threading.Thread(target=lambda: (models.unload(), unloaded.set()))
        thread.start()
        assert not unloaded.wait(0.5), "the model was unloaded under a read"
        assert len(loaded.model.encode("still usable")) > 0
    assert unloaded.wait(30)
    thread.join()
    assert models.current is None


def test_a_load_listener_may_use_the_model_it_hears_of(default_model):
    # Listeners (extensions' on_model_load hooks) are told once the model is let go:
    # one that waits for a use in another thread does not wait for itself.
    models = ModelManager()
    heard = []

    def use_in_another_thread(loaded):
        def use():
            with models.use() as current:
                heard.append((loaded.name, len(current.model.encode("hello")) > 0))
        thread = threading.Thread(target=use)
        thread.start()
        thread.join(20)

    models.on_load(use_in_another_thread)
    models.load(default_model, "llama.cpp", {"n_ctx": 256})
    assert heard == [(models.current.name, True)]
    # Loaded again after idling by the next use: told before that use goes on.
    assert models.unload_if_idle(0) is not None
    with models.use():
        assert len(heard) == 2
    models.unload()
