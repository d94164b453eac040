"""The quant advisor's numbers against raw llama-cpp-python on the same file, same run.

- Perplexity: the advisor asks llama.cpp for logits only at the scored half of each
  chunk; the raw side evaluates each chunk with logits_all=True (llama-cpp-python's own
  route to every position's logits) and scores the same positions in numpy. The two
  perplexities must agree; the time ratio is what scoring only half the positions saves.
- pp and tg: the advisor's decodes against `Llama.eval` of the same tokens (one batch;
  one token at a time) on a second raw instance without logits_all, both timed here from outside, rounds interleaved with the order
  alternating, so a shared machine's noise hits both sides alike.

    .venv/bin/python bench/advisor.py [--model PATH] [--rounds 3] [--threads 2] [--ctx 512]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp  # noqa: E402
import numpy as np  # noqa: E402

from loaders import quant_quality  # noqa: E402
from webui.modelfiles.advisor_text import ADVISOR_TEXT  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402


def raw_perplexity(llm: llama_cpp.Llama, chunks: list[list[int]]) -> float:
    nll, count = 0.0, 0
    for chunk in chunks:
        first = len(chunk) // 2
        llm.reset()
        llm.eval(chunk)
        lp = quant_quality.log_softmax(llm.scores[first:len(chunk) - 1])
        nll += float(quant_quality.token_nll(lp, chunk[first + 1:]).sum())
        count += len(chunk) - 1 - first
    return float(np.exp(nll / count))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(default_model_path()))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--pp", type=int, default=512)
    parser.add_argument("--tg", type=int, default=128)
    args = parser.parse_args()
    path = Path(args.model)
    size = max(args.ctx, args.pp)
    mine = quant_quality._Bench(path, max(size, args.tg + 1), size, args.threads, None)
    def raw_llama(logits_all: bool) -> llama_cpp.Llama:
        return llama_cpp.Llama(str(path), n_ctx=max(size, args.tg + 1), n_batch=size, n_ubatch=size,
                               n_threads=args.threads, n_threads_batch=args.threads, logits_all=logits_all,
                               verbose=False)

    raw = raw_llama(True)     # every position's logits, for perplexity
    plain = raw_llama(False)  # the last token's only, as llama-bench decodes for pp and tg
    tokens = mine.tokenize(ADVISOR_TEXT)
    chunks = quant_quality.chunks_of(tokens, args.ctx, mine.bos)
    pp_tokens = [tokens[i % len(tokens)] for i in range(args.pp)]
    tg_tokens = [tokens[i % len(tokens)] for i in range(args.tg)]

    def mine_ppl():
        tally = quant_quality.QualityTally()
        for chunk in chunks:
            tally.add(*mine.score(chunk))
        return tally.perplexity

    def raw_tg():
        plain.reset()
        for t in tg_tokens:
            plain.eval([t])

    never = threading.Event()
    times: dict[str, list[float]] = {k: [] for k in ("ppl mine", "ppl raw", "pp mine", "pp raw", "tg mine", "tg raw")}
    ppl = {}
    sides = {
        "ppl mine": lambda: ppl.__setitem__("mine", mine_ppl()),
        "ppl raw": lambda: ppl.__setitem__("raw", raw_perplexity(raw, chunks)),
        "pp mine": lambda: mine.prompt_speed(pp_tokens),
        "pp raw": lambda: (plain.reset(), plain.eval(pp_tokens)),
        "tg mine": lambda: mine.generation_speed(tg_tokens, never),
        "tg raw": raw_tg,
    }
    for r in range(args.rounds):
        for test in ("ppl", "pp", "tg"):
            order = ("mine", "raw") if r % 2 == 0 else ("raw", "mine")  # alternate who goes first
            for side in order:
                key = f"{test} {side}"
                times[key].append(timed(sides[key]))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{path.name}, {len(chunks)} chunks of {args.ctx}, {args.threads} threads, {args.rounds} rounds (medians)")
    print(f"perplexity: advisor {ppl['mine']:.4f}, raw logits_all {ppl['raw']:.4f} "
          f"(ratio {ppl['mine'] / ppl['raw']:.5f})")
    print(f"scoring time: advisor {med['ppl mine']:.2f} s, raw {med['ppl raw']:.2f} s "
          f"(advisor / raw {med['ppl mine'] / med['ppl raw']:.2f})")
    print(f"pp{args.pp}: advisor {args.pp / med['pp mine']:.1f} t/s, raw eval {args.pp / med['pp raw']:.1f} t/s "
          f"(ratio {med['pp raw'] / med['pp mine']:.3f})")
    print(f"tg{args.tg}: advisor {args.tg / med['tg mine']:.1f} t/s, raw eval {args.tg / med['tg raw']:.1f} t/s "
          f"(ratio {med['tg raw'] / med['tg mine']:.3f})")
    for llm in (mine, raw, plain):
        llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
