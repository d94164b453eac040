from pathlib import Path

import pytest

import loaders
from loaders import registry
from loaders.base import LoadError


def test_builtin_loaders_are_registered():
    assert "llama.cpp" in loaders.names()


def test_unknown_loader_lists_the_real_ones():
    with pytest.raises(LoadError, match="unknown loader 'nope'; choose one of: llama.cpp"):
        loaders.get("nope")


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(type(loaders.get("llama.cpp")))


def test_detect_by_content_not_by_name(tmp_path: Path, default_model: Path):
    assert loaders.detect(default_model) == "llama.cpp"
    fake = tmp_path / "model.gguf"
    fake.write_text("this is not a model")
    assert loaders.detect(fake) is None
    assert loaders.detect(tmp_path / "missing.gguf") is None
