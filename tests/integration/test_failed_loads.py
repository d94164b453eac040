"""Every failure while loading keeps the previous model, whatever the exception.

The files here are crafted GGUF headers, the kind a hostile or broken download puts
in models/: a library deep under the loader may raise RecursionError, TypeError or
ValueError on them rather than a LoadError. The user must get one line, and the model
that was loaded before must still be loaded and answering.
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from loaders.base import LoadError
from loaders.load_progress import no_progress
from loaders.params import GenerationParams
from webui.runtime.default_model import DEFAULT_MODEL_NAME
from webui.runtime.generation import GenerationEngine
from webui.runtime.model_manager import ModelManager

_U32, _STRING, _ARRAY = 4, 8, 9


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _gguf(pairs: list[tuple[str, bytes]]) -> bytes:
    """A GGUF v3 header with no tensors and the given (key, typed value) pairs."""
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(pairs))
    for key, value in pairs:
        out += _string(key) + value
    return out


def _nested_array(depth: int) -> bytes:
    inner = struct.pack("<IQI", _U32, 1, 7)
    for _ in range(depth):
        inner = struct.pack("<IQ", _ARRAY, 1) + inner
    return struct.pack("<I", _ARRAY) + inner


CRAFTED = {
    "deeply-nested-arrays.gguf": _gguf([("general.architecture", struct.pack("<I", _STRING) + _string("llama")),
                                        ("x.deep", _nested_array(5000))]),
    "alignment-is-text.gguf": _gguf([("general.architecture", struct.pack("<I", _STRING) + _string("llama")),
                                     ("general.alignment", struct.pack("<I", _STRING) + _string("32"))]),
}


@pytest.fixture(scope="module")
def manager(default_model):
    models = ModelManager()
    models.load(default_model, "llama.cpp", {"n_ctx": 512})
    yield models
    models.unload()


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_file_is_one_line_and_the_previous_model_stays(manager, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(CRAFTED[name])
    for loader in (None, "llama.cpp"):  # detected, and forced
        with pytest.raises(LoadError) as caught:
            manager.load(path, loader, {"n_ctx": 512})
        message = str(caught.value)
        assert "\n" not in message and len(message) < 400
        assert manager.current is not None and manager.current.name == DEFAULT_MODEL_NAME
    engine = GenerationEngine(manager)
    try:
        text, stats = engine.submit("The capital of France is",
                                    GenerationParams(temperature=0, max_new_tokens=4)).result()
    finally:
        engine.close()
    assert stats.completion_tokens > 0


def test_an_unexpected_exception_while_loading_keeps_the_previous_model(manager, tmp_path, monkeypatch):
    """A backend bug (here a TypeError from inside the real loader's load) is reported
    in one line and the previous model is loaded again."""
    import loaders

    llama = loaders.get("llama.cpp")
    real_load = type(llama).load

    def load_then_fail(self, path, options, progress=no_progress):
        if Path(path).name == "breaks.gguf":
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
        return real_load(self, path, options, progress)

    monkeypatch.setattr(type(llama), "load", load_then_fail)
    path = tmp_path / "breaks.gguf"
    path.write_bytes(CRAFTED["alignment-is-text.gguf"])
    with pytest.raises(LoadError, match=r"could not load breaks.gguf: TypeError: .*\(kept .* loaded\)"):
        manager.load(path, "llama.cpp", {"n_ctx": 512})
    assert manager.current is not None and manager.current.name == DEFAULT_MODEL_NAME
