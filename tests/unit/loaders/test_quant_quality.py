"""The quant advisor's arithmetic on small arrays with known answers: log-softmax,
perplexity, KL divergence (full and from a reference's top K), chunking."""
from __future__ import annotations

import math

import numpy as np
import pytest

from loaders.quant_quality import (
    QualityTally,
    chunks_of,
    kl_full,
    kl_top_k,
    log_softmax,
    perplexity,
    token_nll,
    top_k,
)


def test_log_softmax_is_normalised_and_stable():
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [1000.0, 1000.0, 0.0, -1000.0]], dtype=np.float32)
    lp = log_softmax(logits)
    assert np.allclose(np.exp(lp).sum(axis=-1), 1.0)
    assert np.allclose(lp[0], math.log(0.25))
    assert lp[1, 0] == pytest.approx(math.log(0.5), abs=1e-6)  # no overflow at 1000


def test_uniform_prediction_has_the_vocabulary_as_perplexity():
    lp = log_softmax(np.zeros((5, 8), dtype=np.float32))
    nll = token_nll(lp, [0, 1, 2, 3, 4])
    assert perplexity(float(nll.sum()), len(nll)) == pytest.approx(8.0, rel=1e-6)


def test_certain_prediction_has_perplexity_one():
    lp = np.log(np.array([[1.0, 1e-30], [1e-30, 1.0]]))
    assert perplexity(float(token_nll(lp, [0, 1]).sum()), 2) == pytest.approx(1.0)


def test_kl_matches_the_formula():
    p = np.log(np.array([[0.5, 0.5]]))
    q = np.log(np.array([[0.25, 0.75]]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_full(p, q)[0] == pytest.approx(expected)
    assert kl_full(p, p)[0] == 0.0


def test_top_k_kl_is_exact_with_the_whole_vocabulary_and_a_lower_bound_with_less():
    rng = np.random.default_rng(0)
    ref = log_softmax(rng.normal(size=(6, 50)).astype(np.float32) * 3)
    other = log_softmax(rng.normal(size=(6, 50)).astype(np.float32) * 3)
    full = kl_full(ref, other)
    ids, lp = top_k(ref, 50)
    assert np.allclose(kl_top_k(ids, lp, other), full, rtol=1e-4, atol=1e-6)
    ids, lp = top_k(ref, 5)
    partial = kl_top_k(ids, lp, other)
    assert np.all(partial <= full + 1e-6) and np.all(partial >= 0)
    assert np.allclose(kl_top_k(ids, lp, ref), 0.0, atol=1e-6)


def test_top_k_keeps_the_most_likely_first():
    lp = np.log(np.array([[0.1, 0.6, 0.05, 0.25]]))
    ids, values = top_k(lp, 3)
    assert ids.tolist() == [[1, 3, 0]]
    assert np.allclose(np.exp(values), [[0.6, 0.25, 0.1]])


def test_a_tally_against_its_own_reference_has_no_divergence():
    rng = np.random.default_rng(1)
    chunks = [log_softmax(rng.normal(size=(4, 30)).astype(np.float32)) for _ in range(2)]
    targets = [[1, 2, 3, 4], [5, 6, 7, 8]]
    ref = QualityTally(keep_reference=True)
    for lp, t in zip(chunks, targets, strict=True):
        ref.add(lp, t)
    dist = ref.distributions(range(10))
    again = QualityTally(reference=dist)
    for lp, t in zip(chunks, targets, strict=True):
        again.add(lp, t)
    assert again.mean_kl == pytest.approx(0.0, abs=1e-7)
    assert again.top1_agreement == 1.0
    assert again.perplexity == pytest.approx(ref.perplexity)
    assert ref.mean_kl is None and ref.top1_agreement is None


def test_top1_agreement_counts_positions_whose_first_choice_differs():
    ref = QualityTally(keep_reference=True)
    ref.add(np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])), [0, 1])
    other = QualityTally(reference=ref.distributions([0, 1]))
    other.add(np.log(np.array([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])), [0, 1])
    assert other.top1_agreement == 0.5
    assert other.mean_kl > 0


def test_chunks_drop_the_short_tail_and_start_with_bos():
    assert chunks_of(list(range(10)), 4, bos=None) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert chunks_of(list(range(10)), 4, bos=99) == [[99, 1, 2, 3], [99, 5, 6, 7]]
    assert chunks_of(list(range(3)), 4, bos=None) == []
