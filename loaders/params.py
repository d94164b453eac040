"""The sampler set: one frozen dataclass that the UI, the CLI and the API all read.

Defaults follow llama.cpp's, which most GGUF users already know. A model declares
which of these it honours (`Model.supported_params`); the rest are reported, not
silently dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

from loaders.fields import SettingError, build, describe, setting, validate
from loaders.grammar_check import MAX_GRAMMAR_CHARS, check_grammar


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = setting(512, "Most tokens to generate for one reply.", minimum=1, ui_maximum=4096, step=1)
    temperature: float = setting(0.8, "Randomness; 0 always picks the most likely token (greedy).", minimum=0.0, ui_maximum=5.0, step=0.01)
    top_k: int = setting(40, "Keep only the k most likely tokens (0 = off).", minimum=0, ui_maximum=200, step=1)
    top_p: float = setting(0.95, "Keep the smallest set of tokens whose probabilities add up to p (1 = off).", minimum=0.0, maximum=1.0, step=0.01)
    min_p: float = setting(0.05, "Drop tokens less likely than min_p times the top token (0 = off).", minimum=0.0, maximum=1.0, step=0.01)
    typical_p: float = setting(1.0, "Locally typical sampling (1 = off).", minimum=0.0, maximum=1.0, step=0.01)
    top_n_sigma: float = setting(-1.0, "Keep tokens within n standard deviations of the top logit (-1 = off).", minimum=-1.0, ui_maximum=5.0, step=0.1, advanced=True)
    dynatemp_range: float = setting(0.0, "Dynamic temperature: vary temperature by up to this much with entropy (0 = off).", minimum=0.0, ui_maximum=5.0, step=0.01, advanced=True)
    dynatemp_exponent: float = setting(1.0, "Dynamic temperature exponent.", minimum=0.0, ui_maximum=5.0, step=0.01, advanced=True)
    repetition_penalty: float = setting(1.0, "Penalise tokens already in the recent context (1 = off).", minimum=0.0, exclusive_minimum=True, ui_maximum=2.0, step=0.01)
    repetition_penalty_range: int = setting(64, "How many recent tokens the penalties look at (0 = off, -1 = whole context).", minimum=-1, ui_maximum=4096, step=1)
    presence_penalty: float = setting(0.0, "Penalise any token that already appeared.", minimum=-2.0, maximum=2.0, step=0.01)
    frequency_penalty: float = setting(0.0, "Penalise tokens by how often they appeared.", minimum=-2.0, maximum=2.0, step=0.01)
    dry_multiplier: float = setting(0.0, "DRY: penalise repeating sequences (0 = off; 0.8 is a common choice).", minimum=0.0, ui_maximum=5.0, step=0.01, advanced=True)
    dry_base: float = setting(1.75, "DRY: how fast the penalty grows with the repeat length.", minimum=1.0, ui_maximum=4.0, step=0.01, advanced=True)
    dry_allowed_length: int = setting(2, "DRY: repeats up to this long are not penalised.", minimum=1, ui_maximum=20, step=1, advanced=True)
    dry_penalty_last_n: int = setting(-1, "DRY: how many recent tokens to scan (-1 = whole context).", minimum=-1, ui_maximum=8192, step=1, advanced=True)
    xtc_probability: float = setting(0.0, "XTC: chance of excluding the top choices (0 = off).", minimum=0.0, maximum=1.0, step=0.01, advanced=True)
    xtc_threshold: float = setting(0.1, "XTC: tokens above this probability may be excluded.", minimum=0.0, maximum=1.0, step=0.01, advanced=True)
    mirostat_mode: int = setting(0, "Mirostat: 0 = off, 1 = Mirostat, 2 = Mirostat 2.0 (replaces top-k/p).", choices=(0, 1, 2))
    mirostat_tau: float = setting(5.0, "Mirostat target entropy.", minimum=0.0, ui_maximum=10.0, step=0.01)
    mirostat_eta: float = setting(0.1, "Mirostat learning rate.", minimum=0.0, ui_maximum=1.0, step=0.01)
    seed: int = setting(-1, "Random seed; -1 picks a new one each time.", minimum=-1, maximum=2**32 - 1, step=1)
    ignore_eos: bool = setting(False, "Keep generating past the end-of-sequence token.", advanced=True)
    grammar: str = setting("", "GBNF grammar that the output must follow (empty = none).",
                           max_length=MAX_GRAMMAR_CHARS, advanced=True)
    stop: tuple[str, ...] = setting((), "Stop strings: the reply ends before the first one that appears.")
    # Not a setting (no control, flag or API field of its own): a request's OpenAI
    # response_format as JSON, set instead of the grammar for a backend whose engine
    # takes it (loaders/remote.py: vLLM's response_format, llama.cpp's json_schema).
    response_format: str = ""

    def __post_init__(self) -> None:
        validate(self)
        if any(not s for s in self.stop):
            raise SettingError("stop strings must not be empty")
        if self.grammar:  # every backend that takes a grammar hands it to native code
            check_grammar(self.grammar)

    @classmethod
    def from_mapping(cls, values=None, **overrides) -> GenerationParams:
        return build(cls, values, **overrides)


PARAM_NAMES = frozenset(s.name for s in describe(GenerationParams))
# Every backend honours these: core applies them around the backend's token stream.
CORE_PARAMS = frozenset({"max_new_tokens", "stop"})
