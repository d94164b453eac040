"""ExLlamaV2's choice between its paged and unpaged generator. exllamav2 itself cannot
run here (no CUDA GPU; importing it compiles CUDA kernels), so the generator class and
exllamav2.attn are stand-ins that record how they were called and assert what the
real paged generator asserts, with its message."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from loaders import exllamav2

PAGED_NEEDS_FLASH = "Paged attention required Flash Attention 2.5.7 or later"


class GeneratorStandIn:
    """Stands in for ExLlamaV2DynamicGenerator: paged by default, and then asserts
    flash-attn's paged kernels (and that the model config has not turned flash-attn off)."""

    def __init__(self, *, model, cache, tokenizer, paged=True, max_batch_size=None, attn=None, config_no_flash=False):
        self.paged, self.max_batch_size = paged, max_batch_size
        if paged:
            assert attn.has_flash_attn_with_paged, PAGED_NEEDS_FLASH
            assert not config_no_flash, "Paged mode requires flash-attn, but flash-attn is disabled in model config."


def build(has_paged: bool, **generator_options):
    attn = SimpleNamespace(has_flash_attn_with_paged=has_paged)

    def generator(**kw):
        return GeneratorStandIn(attn=attn, **generator_options, **kw)
    return exllamav2.make_generator(generator, attn, model=object(), cache=object(), tokenizer=object())


def test_paged_when_flash_attn_has_paged_kernels():
    generator, note = build(has_paged=True)
    assert generator.paged and note is None


def test_unpaged_with_a_note_without_flash_attn(monkeypatch):
    monkeypatch.setattr(exllamav2, "flash_attn_version", lambda: None)
    generator, note = build(has_paged=False)
    assert not generator.paged and generator.max_batch_size == 1
    assert note == ("ExLlamaV2 runs unpaged, one sequence at a time: its paged attention needs flash-attn "
                    "2.5.7 or later, and flash-attn is not installed")


def test_an_old_flash_attn_is_named_in_the_note(monkeypatch):
    monkeypatch.setattr(exllamav2, "flash_attn_version", lambda: "2.5.6")
    _, note = build(has_paged=False)
    assert "flash-attn 2.5.6 is installed" in note


def test_unpaged_when_the_model_config_turns_flash_attn_off():
    generator, note = build(has_paged=True, config_no_flash=True)
    assert not generator.paged and note is not None


def test_other_assertions_are_not_taken_for_a_missing_flash_attn():
    def generator(**kw):
        raise AssertionError("Dynamic generator does not currently work with 8-bit cache.")

    with pytest.raises(AssertionError, match="8-bit cache"):
        exllamav2.make_generator(generator, SimpleNamespace(has_flash_attn_with_paged=True),
                                 model=None, cache=None, tokenizer=None)
