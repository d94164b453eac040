"""Every numeric load option of every loader has an upper bound, because each sizes
something a native library builds (threads, a KV cache, buffers) and aborts on when
asked for too much; and text settings can declare a longest length."""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

import loaders
from loaders.fields import SettingError, build, describe, setting
from loaders.option_limits import MAX_CONTEXT_TOKENS, MAX_THREADS


def numeric_options():
    for name in loaders.names():
        for spec in describe(loaders.get(name).Options):
            if spec.type in (int, float) and spec.choices is None:
                yield name, spec


def test_every_registered_loader_is_checked():
    checked = {name for name, _ in numeric_options()}
    assert {"llama.cpp", "Transformers", "GPTQ", "ExLlamaV2", "remote"} <= checked


@pytest.mark.parametrize("loader, spec", list(numeric_options()), ids=lambda x: getattr(x, "name", x))
def test_every_numeric_option_has_a_maximum(loader, spec):
    assert spec.maximum is not None, f"{loader} option {spec.name} has no maximum"
    assert spec.default <= spec.maximum
    with pytest.raises(SettingError) as caught:
        build(loaders.get(loader).Options, {spec.name: spec.maximum + 1})
    assert f"{spec.name} must be at most" in str(caught.value)


@pytest.mark.parametrize("loader, option", [
    ("llama.cpp", "n_threads"), ("llama.cpp", "n_threads_batch"),
    ("Transformers", "cpu_threads"), ("GPTQ", "cpu_threads"),
])
def test_thread_counts_are_bounded_by_this_machine(loader, option):
    assert MAX_THREADS == 4 * (os.cpu_count() or 1)
    with pytest.raises(SettingError, match=f"{option} must be at most {MAX_THREADS}"):
        build(loaders.get(loader).Options, {option: 100_000})
    build(loaders.get(loader).Options, {option: MAX_THREADS})


@pytest.mark.parametrize("loader, option", [
    ("llama.cpp", "n_ctx"), ("ExLlamaV2", "max_seq_len"), ("remote", "remote_context_length"),
])
def test_context_lengths_share_one_bound(loader, option):
    spec = next(s for s in describe(loaders.get(loader).Options) if s.name == option)
    assert spec.maximum == MAX_CONTEXT_TOKENS == 2**24


@dataclass(frozen=True)
class _Text:
    note: str = setting("", "A short note.", max_length=8)


def test_a_text_setting_can_declare_its_longest_length():
    spec = describe(_Text)[0]
    assert spec.max_length == 8
    assert build(_Text, {"note": "12345678"}).note == "12345678"
    with pytest.raises(SettingError) as caught:
        build(_Text, {"note": "secret-and-too-long"})
    assert str(caught.value) == "note must be at most 8 characters (got 19)"
