"""The generation queue carries a failed reply's error as the object itself, so each
face can read its kind; a backend bug becomes one INTERNAL UserError and the queue
goes on.

The backend here is a stand-in (a few lines that fail on demand): a real backend
makes its errors itself, so a test could not hold the very object it raised."""
from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from loaders import registry
from loaders.base import GenerationError
from loaders.errors import ErrorKind, UserError
from loaders.params import GenerationParams
from webui.runtime.generation import Delta, Failed, GenerationEngine
from webui.runtime.model_manager import ModelManager, NoModelLoaded

PARAMS = GenerationParams(max_new_tokens=8)


class FailingModel:
    """Says "a", "b", then raises `self.error` (or finishes when it is None)."""
    context_length = 64
    chat_template = None
    supported_params = frozenset()
    last_prompt_eval_tokens = 0

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(i) for i in ids)

    def generate(self, prompt_ids: Sequence[int], params, cancel: threading.Event) -> Iterator[str]:
        self.last_prompt_eval_tokens = len(prompt_ids)
        yield "a"
        yield "b"
        if self.error is not None:
            raise self.error

    def unload(self) -> None:
        pass


@dataclass(frozen=True)
class NoOptions:
    pass


class FailingLoader:
    name = "failing (test)"
    Options = NoOptions

    def __init__(self) -> None:
        self.model = FailingModel()

    def can_load(self, path) -> bool:
        return False

    def load(self, path, options, progress=None) -> FailingModel:
        return self.model


@pytest.fixture
def model(monkeypatch) -> FailingModel:
    loader = FailingLoader()
    monkeypatch.setitem(registry._LOADERS, loader.name, loader)
    return loader.model


@pytest.fixture
def engine(model):
    manager = ModelManager()
    manager.load(Path("stand-in"), FailingLoader.name)
    engine = GenerationEngine(manager)
    yield engine
    engine.close()


def test_the_models_error_reaches_the_consumer_as_the_same_object(engine, model):
    model.error = GenerationError("the grammar does not parse", kind=ErrorKind.INVALID)
    events = list(engine.submit("hi", PARAMS).events())
    assert events[:2] == [Delta("a"), Delta("b")]
    assert isinstance(events[-1], Failed)
    assert events[-1].error is model.error
    assert events[-1].error.kind is ErrorKind.INVALID  # its own kind, not its class's
    assert events[-1].message == "the grammar does not parse"


def test_result_raises_the_carried_error(engine, model):
    model.error = GenerationError("the engine dropped the connection mid-reply")
    with pytest.raises(GenerationError) as caught:
        engine.submit("hi", PARAMS).result()
    assert caught.value is model.error


def test_a_backend_bug_is_one_internal_user_error_and_the_queue_goes_on(engine, model):
    bug = ZeroDivisionError("division by zero")
    model.error = bug
    batches = list(engine.submit("hi", PARAMS).stream_batches())
    failed = batches[-1]
    assert isinstance(failed, Failed) and type(failed.error) is UserError
    assert failed.error.kind is ErrorKind.INTERNAL
    assert failed.message == "generation failed: ZeroDivisionError: division by zero"
    assert failed.error.__cause__ is bug
    model.error = None
    text, stats = engine.submit("hi", PARAMS).result()
    assert text == "ab" and stats.completion_tokens == 2


def test_no_model_is_unavailable():
    engine = GenerationEngine(ModelManager())
    try:
        end = list(engine.submit("hi", PARAMS).events())[-1]
    finally:
        engine.close()
    assert isinstance(end, Failed) and isinstance(end.error, NoModelLoaded)
    assert end.error.kind is ErrorKind.UNAVAILABLE

