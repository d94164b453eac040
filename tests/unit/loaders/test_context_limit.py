"""The context check, said one way: core, every backend and the chat's history fitting
use loaders.context_limit."""
from __future__ import annotations

import threading

import pytest

from loaders import remote
from loaders.base import GenerationError
from loaders.context_limit import check_fits, overflow
from loaders.params import GenerationParams

MESSAGE = "the prompt is 10 tokens but the context holds 10; shorten it or load the model with a longer context"


def test_a_prompt_that_leaves_room_for_one_token_fits():
    assert check_fits(9, 10) == 1
    assert overflow(9, 10) is None


def test_a_prompt_that_fills_the_context_is_refused_in_one_line():
    with pytest.raises(GenerationError) as err:
        check_fits(10, 10)
    assert str(err.value) == MESSAGE


def test_room_kept_for_the_reply_is_named():
    assert overflow(90, 100, reserve=10) is None
    assert overflow(91, 100, reserve=10) == ("the prompt is 91 tokens but the context holds 100 with 10 kept "
                                             "for the reply; shorten it or load the model with a longer context")


def test_a_backend_refuses_with_the_same_words_before_it_sends_anything():
    """The remote backend, whose engine cannot exist here: no client, so a request
    would fail; the check comes first."""
    model = remote.RemoteModel(None, "http://engine", "m", remote.DIALECTS["openai"], 10, None, None)
    with pytest.raises(GenerationError) as err:
        next(model.generate(list(range(10)), GenerationParams(), threading.Event()))
    assert str(err.value) == MESSAGE
