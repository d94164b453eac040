"""The one user-error type: one line, a kind per class, a kind per error when asked."""
from __future__ import annotations

import pickle

from loaders.base import GenerationError, LoadError
from loaders.errors import ErrorKind, UserError
from loaders.fields import SettingError


def test_the_message_is_always_one_line():
    error = LoadError("llama.cpp could not load x.gguf:\n  tensor 'blk.0' has\twrong shape\n")
    assert error.message == str(error) == "llama.cpp could not load x.gguf: tensor 'blk.0' has wrong shape"


def test_each_class_has_its_kind_and_one_error_may_have_another():
    assert LoadError("x").kind is ErrorKind.FAILED
    assert SettingError("x").kind is ErrorKind.INVALID
    odd = GenerationError("the engine is unreachable", kind=ErrorKind.UNAVAILABLE)
    assert odd.kind is ErrorKind.UNAVAILABLE
    assert GenerationError("x").kind is ErrorKind.FAILED  # the class keeps its own


def test_callers_that_catch_the_builtin_bases_still_do():
    assert isinstance(SettingError("x"), ValueError)  # pydantic validators report only ValueErrors
    assert isinstance(LoadError("x"), RuntimeError)


def test_an_error_keeps_its_kind_across_pickling():
    error = pickle.loads(pickle.dumps(UserError("boom", kind=ErrorKind.INTERNAL)))
    assert (error.message, error.kind) == ("boom", ErrorKind.INTERNAL)


def test_an_unexpected_exception_is_described_in_one_short_line():
    from loaders.errors import describe_exception

    assert describe_exception(TypeError("a\n  b")) == "TypeError: a b"
    assert describe_exception(RecursionError()) == "RecursionError"
    long = describe_exception(ValueError("x" * 500))
    assert long.startswith("ValueError: xxx") and long.endswith("...") and len(long) == len("ValueError: ") + 200
