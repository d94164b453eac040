"""A llama-bench style run on the loaded model, through Hearth's own queue: pp512
(prompt processing: 512 tokens read at once) and tg128 (text generation: 128 tokens
one by one), each repeated and reported as mean ± standard deviation in tokens/s.

Like llama-bench, pp reads a fresh prompt each time (a different random word order,
so no cached prefix is reused) and tg forces every token (end-of-text ignored). tg
counts the tokens after the first, over the time after the first: the first token
belongs to reading the prompt.
"""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

WORDS = ("time year people way day man thing woman life child world school state family student "
         "group country problem hand part place case week company system program question work "
         "government number night point home water room mother area money story fact month lot "
         "right study book eye job word business issue side kind head house service friend father "
         "power hour game line end member law car city community name president team minute idea").split()


@dataclass(frozen=True)
class BenchResult:
    test: str  # "pp512", "tg128"
    tokens_per_second: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.tokens_per_second)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.tokens_per_second) if len(self.tokens_per_second) > 1 else 0.0


def random_prompt(ctx, n_tokens: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids = ctx.tokenize(" ".join(rng.choice(WORDS) for _ in range(n_tokens + 64)))
    return ids[:n_tokens]


def run_bench(ctx, n_prompt: int = 512, n_gen: int = 128, repetitions: int = 3,
              own_stats: list | None = None) -> list[BenchResult]:
    """`own_stats` collects the runs' GenerationStats (the tab leaves them out of its plot)."""
    model = ctx.model()
    if model is None:
        raise RuntimeError("no model is loaded: load one in the Model tab")
    # Room for the prompt plus the one token that reading it produces.
    n_prompt = max(min(n_prompt, model.context_length - 2), 1)
    n_gen = max(min(n_gen, model.context_length - 2), 2)
    pp, tg = [], []
    for rep in range(repetitions):
        _, stats = ctx.generate(random_prompt(ctx, n_prompt, seed=rep),
                                {"max_new_tokens": 1, "temperature": 0.0}).result()
        if own_stats is not None:
            own_stats.append(stats)
        if stats.prompt_seconds > 0:
            pp.append(stats.prompt_eval_tokens / stats.prompt_seconds)
        _, stats = ctx.generate(random_prompt(ctx, 1, seed=1000 + rep),
                                {"max_new_tokens": n_gen, "temperature": 0.0, "ignore_eos": True,
                                 "seed": rep}).result()
        if own_stats is not None:
            own_stats.append(stats)
        if stats.generation_tokens_per_second > 0:
            tg.append(stats.generation_tokens_per_second)
    return [BenchResult(f"pp{n_prompt}", pp), BenchResult(f"tg{n_gen}", tg)]


def results_table(model_name: str, results: list[BenchResult]) -> str:
    """llama-bench's markdown table."""
    lines = ["| model | test | t/s |", "| --- | ---: | ---: |"]
    for r in results:
        value = f"{r.mean:.2f} ± {r.stdev:.2f}" if r.tokens_per_second else "no result"
        lines.append(f"| {model_name} | {r.test} | {value} |")
    return "\n".join(lines)
