"""Every GenerationParams field, against every registered backend: each field is either
applied by the backend or listed as unsupported, and a field a backend claims really
changes what it builds (llama.cpp's sampler chain, Transformers' generate arguments and
penalties, exllamav2's sampler settings and job, the remote engine's request body).

A new field in GenerationParams fails here until every backend has decided on it; a
field claimed but never passed on fails the perturbation check.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import loaders
from loaders import exllamav2, hf_model, llamacpp, remote
from loaders.base import GenerationError
from loaders.fields import SettingSpec, describe
from loaders.params import CORE_PARAMS, GenerationParams
from loaders.samplers import SamplerSupport

FIELDS = [s.name for s in describe(GenerationParams)]


def supports() -> list[tuple[str, SamplerSupport]]:
    return [(name, support) for name in loaders.names() for support in loaders.get(name).samplers]


def test_every_registered_backend_declares_its_samplers():
    for name in loaders.names():
        assert getattr(loaders.get(name), "samplers", ()), f"{name} declares no SamplerSupport"


@pytest.mark.parametrize("loader, support", supports(), ids=[s.backend for _, s in supports()])
def test_every_field_is_decided_by_every_backend(loader, support):
    for name in FIELDS:
        decided = name in CORE_PARAMS or name in support.applied or name in support.unsupported
        assert decided, f"{support.backend} has not decided on {name}: apply it or list it as unsupported"
    assert support.undecided() == frozenset()


def test_supported_params_are_derived_from_the_declaration():
    assert llamacpp.SAMPLERS.supported_params == frozenset(FIELDS)  # its chain reads them all
    assert hf_model.SAMPLERS.supported_params == CORE_PARAMS | set(hf_model.SAMPLERS.applied)
    assert "grammar" not in hf_model.SAMPLERS.supported_params
    assert "dry_multiplier" not in remote.DIALECTS["vllm"].supported_params


def test_a_declaration_cannot_name_a_field_that_does_not_exist_or_both_ways():
    with pytest.raises(ValueError, match="not GenerationParams fields: temprature"):
        SamplerSupport("x", {"temprature": "t"})
    with pytest.raises(ValueError, match="both applied and unsupported: top_k"):
        SamplerSupport("x", {"top_k": "k"}, frozenset({"top_k"}))
    with pytest.raises(ValueError, match="core applies"):
        SamplerSupport("x", {}, frozenset({"stop"}))


# --- claimed fields really change what the backend builds ------------------------------

# Starting points that switch every optional stage on in turn, so a field that only
# matters inside one (mirostat_tau, dry_base, xtc_threshold, ...) is seen there.
SCENARIOS = [
    GenerationParams(seed=7),
    GenerationParams(seed=7, temperature=0.0),
    GenerationParams(seed=7, mirostat_mode=1),
    GenerationParams(seed=7, mirostat_mode=2),
    GenerationParams(seed=7, repetition_penalty=1.1, presence_penalty=0.2, frequency_penalty=0.1,
                     dry_multiplier=0.8, dry_penalty_last_n=64, xtc_probability=0.5, top_n_sigma=1.5,
                     dynatemp_range=0.5, typical_p=0.9, grammar='root ::= "a"', ignore_eos=True,
                     stop=("END",)),
]


def other_values(spec: SettingSpec, value: Any) -> list[Any]:
    """Valid values of a field other than `value`."""
    if spec.choices:
        return [c for c in spec.choices if c != value]
    if spec.type is bool:
        return [not value]
    if spec.type is str:
        return [value + " ", 'root ::= "b"']
    if spec.type is tuple:
        return [("other",), ()]
    step = 1 if spec.type is int else 0.05
    out = []
    for candidate in (value + step, value - step):
        too_low = spec.minimum is not None and (candidate < spec.minimum or
                                                (spec.exclusive_minimum and candidate == spec.minimum))
        too_high = spec.maximum is not None and candidate > spec.maximum
        if not (too_low or too_high):
            out.append(round(candidate, 6) if spec.type is float else candidate)
    return out


def changes(probe: Callable[[GenerationParams], dict], name: str, where: str) -> bool:
    """Whether some other value of field `name` changes `probe(params)[where]` in some scenario."""
    spec = next(s for s in describe(GenerationParams) if s.name == name)
    for base in SCENARIOS:
        for value in other_values(spec, getattr(base, name)):
            try:
                before, after = probe(base), probe(dataclasses.replace(base, **{name: value}))
            except GenerationError:  # a combination the backend refuses in so many words
                continue
            if before.get(where) != after.get(where):
                return True
    return False


def llamacpp_chain(params: GenerationParams) -> dict:
    """The steps of llama.cpp's real sampler chain (the list _make_sampler adds to a
    LlamaSampler), keyed by LlamaSampler method."""
    return dict(llamacpp.sampler_chain(params, n_ctx=4096, n_vocab=49152))


def transformers_arguments(params: GenerationParams) -> dict:
    return {**hf_model.generation_kwargs(params, 64), "penalties": hf_model.penalties(params)}


class Exl2SettingsStandIn:
    """Stands in for exllamav2's ExLlamaV2Sampler.Settings: importing exllamav2 compiles
    CUDA kernels, which cannot happen on a machine without a GPU."""

    dry_max_ngram = 20


def exl2_arguments(params: GenerationParams) -> dict:
    settings = exllamav2.sampler_settings(SimpleNamespace(Settings=Exl2SettingsStandIn), params)
    return {**vars(settings), **exllamav2.job_arguments(params, eos_token_id=2, room=4096)}


def remote_body(dialect: str) -> Callable[[GenerationParams], dict]:
    model = remote.RemoteModel(None, "http://engine", "m", remote.DIALECTS[dialect], 4096, None, None)
    return lambda params: model.request_body("prompt", params, max_tokens=params.max_new_tokens)


# backend -> (what it builds from GenerationParams, fields it applies outside of that, and why)
PROBES: dict[str, tuple[Callable[[GenerationParams], dict], dict[str, str]]] = {
    "llama.cpp": (llamacpp_chain, {"ignore_eos": "LlamaCppModel.generate's token loop"}),
    "Transformers": (transformers_arguments, {"seed": "torch.manual_seed in HFModel.generate"}),
    "ExLlamaV2": (exl2_arguments, {}),
    **{f"remote ({d})": (remote_body(d), {}) for d in remote.DIALECTS},
}


@pytest.mark.parametrize("loader, support", supports(), ids=[s.backend for _, s in supports()])
def test_every_claimed_field_changes_what_the_backend_builds(loader, support):
    assert support.backend in PROBES, f"{support.backend} has no probe here: add one"
    probe, elsewhere = PROBES[support.backend]
    never_read = [name for name, where in support.applied.items()
                  if name not in CORE_PARAMS and name not in elsewhere and not changes(probe, name, where)]
    assert never_read == [], (f"{support.backend} claims {never_read}, but they never reach "
                              f"{[support.applied[n] for n in never_read]}")
    assert set(elsewhere) <= set(support.applied)


def test_the_probe_catches_a_claimed_field_that_is_never_read(monkeypatch):
    """The check itself: a chain that drops min_p is caught."""
    real = llamacpp.sampler_chain

    def without_min_p(params, n_ctx, n_vocab):
        return [step for step in real(params, n_ctx, n_vocab) if step[0] != "add_min_p"]

    monkeypatch.setattr(llamacpp, "sampler_chain", without_min_p)
    assert not changes(llamacpp_chain, "min_p", "add_min_p")
    assert changes(llamacpp_chain, "top_k", "add_top_k")


def test_llamacpp_steps_are_real_llama_sampler_methods():
    llama_internals = pytest.importorskip("llama_cpp._internals")
    steps = {where for where in llamacpp.SAMPLERS.applied.values() if where.startswith("add_")}
    chain = {m for p in SCENARIOS for m, _ in llamacpp.sampler_chain(p, 4096, 49152) if m.startswith("add_")}
    for method in steps | chain:
        assert callable(getattr(llama_internals.LlamaSampler, method, None)), method
