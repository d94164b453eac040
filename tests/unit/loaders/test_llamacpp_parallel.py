"""The llama.cpp loader's `parallel` option: what auto (0) becomes on localhost and with
--listen, and the combinations the batched path refuses in one line."""
from __future__ import annotations

import pytest

from loaders import llamacpp
from loaders.fields import SettingError
from loaders.llamacpp import LlamaCppOptions, resolve_parallel, serve_many_clients


@pytest.fixture
def listening():
    serve_many_clients(True)
    yield
    serve_many_clients(False)


def test_auto_is_one_reply_at_a_time_on_localhost():
    assert resolve_parallel(LlamaCppOptions()) == 1


def test_auto_serves_at_least_two_with_listen(listening, monkeypatch):
    assert resolve_parallel(LlamaCppOptions()) >= 2
    monkeypatch.setattr(llamacpp, "usable_cpus", lambda: 16)
    assert resolve_parallel(LlamaCppOptions()) == 4  # as llama-server's auto
    assert resolve_parallel(LlamaCppOptions(parallel=3)) == 3  # a value given wins
    # Features the batched path lacks keep auto at one reply.
    assert resolve_parallel(LlamaCppOptions(prompt_lookup_ngram=3)) == 1
    assert resolve_parallel(LlamaCppOptions(prompt_cache="ram")) == 1


@pytest.mark.parametrize("option", [{"draft_model": "small.gguf"}, {"prompt_lookup_ngram": 2},
                                    {"prompt_cache": "disk"}])
def test_batched_decoding_refuses_what_it_lacks_in_one_line(option):
    name = next(iter(option))
    with pytest.raises(SettingError, match=rf"^{name} works only with parallel=1 \(got parallel=2\); "):
        LlamaCppOptions(parallel=2, **option)
