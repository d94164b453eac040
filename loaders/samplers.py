"""Which GenerationParams fields a backend applies, and where, declared once per backend.

Each backend maps every field it honours to the place it applies it (its library's own
parameter name, or the step of its sampler chain) and lists the fields it does not
apply; `supported_params`, which the API reports (X-Hearth-Ignored-Params) and the
Parameters tab greys out by, is derived from that. A test enumerates GenerationParams
against every registered backend: a field that a backend has not decided on, or that
it claims but never passes on, fails it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from loaders.params import CORE_PARAMS, PARAM_NAMES


@dataclass(frozen=True)
class SamplerSupport:
    backend: str
    # field -> where the backend applies it (its own name for it, or the code path)
    applied: Mapping[str, str]
    # fields the backend has no equivalent for: reported, never silently dropped
    unsupported: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = (set(self.applied) | self.unsupported) - PARAM_NAMES
        if unknown:
            raise ValueError(f"{self.backend}: not GenerationParams fields: {', '.join(sorted(unknown))}")
        both = set(self.applied) & self.unsupported
        if both:
            raise ValueError(f"{self.backend}: both applied and unsupported: {', '.join(sorted(both))}")
        if self.unsupported & CORE_PARAMS:
            raise ValueError(f"{self.backend}: core applies {', '.join(sorted(CORE_PARAMS))} for every backend")

    @property
    def supported_params(self) -> frozenset[str]:
        return CORE_PARAMS | frozenset(self.applied)

    def undecided(self) -> frozenset[str]:
        """Fields this backend neither applies nor lists as unsupported (must be none)."""
        return PARAM_NAMES - CORE_PARAMS - set(self.applied) - self.unsupported
