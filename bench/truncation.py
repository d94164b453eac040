"""Chat truncation cost: 1,000 vs 10,000 messages.

For each history length, rounds interleaved, median of rounds:

- Hearth, first turn: a fresh token cache; fit the history into the context.
- Hearth, next turn: two new messages; fit again (cached counts).
- Hearth, a whole turn's core work: copy the history for the request (as
  Conversation does), fit it, and save the chat file atomically.
- raw llama.cpp, whole history: render every message with the template and tokenize
  it in one call, the simple way to learn whether a history fits.
- raw llama.cpp, per message: tokenize every message again (counts without a cache).
- raw llama.cpp, the fitted prompt only: tokenizing the prompt that is sent, which
  any path must do; Hearth's turn should cost about this much.

The raw sides use the same tokenizer (SmolLM2's, llama.cpp, vocab only) and the
same template; ratios are raw time / Hearth time.

Run: .venv/bin/python bench/truncation.py [--rounds 5] [--ctx 4096]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webui.chat.context import TokenCounter  # noqa: E402
from webui.chat.histories import HistoryStore  # noqa: E402
from webui.chat.prompts import ChatRequest, build_chat_prompt  # noqa: E402
from webui.chat.templates import BUILTIN_TEMPLATES, render_chat_prompt  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

CHATML = BUILTIN_TEMPLATES["ChatML"]
WORDS = "the fire crackles softly while we talk about stories riddles and the long winter night".split()


def history(n: int) -> list[dict]:
    """About 30 tokens a message, varied so no two messages are the same text."""
    out = []
    for i in range(n):
        words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(20))
        out.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}: {words}."})
    return out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--reserve", type=int, default=512)
    args = parser.parse_args()

    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)

    def encode(text: str):
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    sizes = (1_000, 10_000)
    data = {n: history(n) for n in sizes}
    results: dict[tuple[int, str], list[float]] = {}
    folder = tempfile.TemporaryDirectory(prefix="hearth-bench-")
    store = HistoryStore(Path(folder.name))

    for _ in range(args.rounds):
        for n in sizes:  # interleaved: every measure, every size, every round
            msgs = list(data[n])
            counter = TokenCounter(encode)

            def fit():
                return build_chat_prompt(ChatRequest(msgs, template=CHATML), counter, None, args.ctx, args.reserve)

            results.setdefault((n, "hearth first turn"), []).append(timed(fit))
            fitted = fit().text
            results.setdefault((n, "raw: tokenize the fitted prompt"), []).append(timed(lambda: encode(fitted)))
            msgs += [{"role": "assistant", "content": "a new reply"}, {"role": "user", "content": "a new question"}]
            results.setdefault((n, "hearth next turn"), []).append(timed(fit))
            chat = store.new("Bench")
            chat.messages = msgs

            def whole_turn():
                snapshot = [dict(m) for m in msgs]
                build_chat_prompt(ChatRequest(snapshot, template=CHATML), counter, None, args.ctx, args.reserve)
                store.save(chat)

            results.setdefault((n, "hearth turn: copy + fit + save"), []).append(timed(whole_turn))
            results.setdefault((n, "raw: tokenize whole history"), []).append(
                timed(lambda: encode(render_chat_prompt(CHATML.source, msgs))))
            results.setdefault((n, "raw: tokenize every message"), []).append(
                timed(lambda: sum(len(encode(m["content"])) for m in msgs)))

    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    names = list(dict.fromkeys(k[1] for k in results))
    print(f"SmolLM2 tokenizer (llama.cpp), ChatML, context {args.ctx}, {args.rounds} rounds, median ms")
    print(f"{'measure':34} {'1,000 msgs':>11} {'10,000 msgs':>12} {'10k / 1k':>9}")
    for name in names:
        a, b = med[(1_000, name)], med[(10_000, name)]
        print(f"{name:34} {a:11.2f} {b:12.2f} {b / a:9.1f}")
    print()
    for n in sizes:
        print(f"{n:>6} messages: hearth next turn / raw fitted prompt = "
              f"{med[(n, 'hearth next turn')] / med[(n, 'raw: tokenize the fitted prompt')]:.2f}, "
              f"raw whole history / hearth next turn = "
              f"{med[(n, 'raw: tokenize whole history')] / med[(n, 'hearth next turn')]:.0f}x, "
              f"raw every message / hearth next turn = "
              f"{med[(n, 'raw: tokenize every message')] / med[(n, 'hearth next turn')]:.0f}x")
    llm.close()
    folder.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
