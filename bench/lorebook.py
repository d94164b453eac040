"""Lorebook cost per chat turn: a turn's prompt built with and without a large
lorebook, on the same history, rounds interleaved (without, with, without, ...), the
median of rounds.

- without: build_chat_prompt (chat-instruct, ChatML) for the next turn of a
  200-message chat, token counts cached, as every turn after the first.
- with: the same turn with a 1,000-entry lorebook (3 keys each, ~35 tokens of
  content; 20 entries triggered by the last messages); their counts cached too.
- scan only: finding the triggered entries (chat/lore.py `triggered`), no tokenizer.
- first turn without / with: both with a fresh token cache (the kept history and every
  triggered entry tokenized once).

The tokenizer is SmolLM2's (llama.cpp, vocab only); the ratio with / without is what
to read on a shared machine.

Run: .venv/bin/python bench/lorebook.py [--rounds 7] [--entries 1000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webui.characters.character import Character  # noqa: E402
from webui.characters.lorebook import Lorebook, LoreEntry  # noqa: E402
from webui.chat.context import TokenCounter  # noqa: E402
from webui.chat.lore import triggered  # noqa: E402
from webui.chat.prompts import ChatRequest, build_chat_prompt  # noqa: E402
from webui.chat.templates import BUILTIN_TEMPLATES  # noqa: E402
from webui.runtime.default_model import default_model_path  # noqa: E402

WORDS = "the fire crackles softly while we talk about stories riddles and the long winter night".split()
CHARACTER = Character(name="Ember", context="Ember is a hearth spirit who knows every tale of the valley.")


def history(n: int, hits: int) -> list[dict]:
    out = []
    for i in range(n):
        words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(20))
        out.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}: {words}."})
    # The last two messages name `hits` places, each the key of one entry.
    out[-1]["content"] += " " + " ".join(f"place{k}" for k in range(hits // 2))
    out[-2]["content"] += " " + " ".join(f"place{k}" for k in range(hits // 2, hits))
    return out


def lorebook(n: int) -> Lorebook:
    return Lorebook("Valley", tuple(
        LoreEntry(keys=(f"place{i}", f"region{i}", f"town{i}"), name=f"Place {i}", insertion_order=i,
                  content=f"Place {i} lies {i % 7} leagues north of the river; its people keep bees and "
                          f"tell the story of the winter night number {i}.") for i in range(n)))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--hits", type=int, default=20)
    args = parser.parse_args()

    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)

    def encode(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    msgs = history(args.messages, args.hits)
    book = lorebook(args.entries)
    plain = ChatRequest(msgs, mode="chat-instruct", character=CHARACTER, template=BUILTIN_TEMPLATES["ChatML"])
    with_book = ChatRequest(msgs, mode="chat-instruct", character=CHARACTER, template=BUILTIN_TEMPLATES["ChatML"],
                            lorebooks=[book])
    counter = TokenCounter(encode)
    first = build_chat_prompt(with_book, counter, None, 4096, 512)  # warm the cache
    assert len(first.lore.inserted) == args.hits, len(first.lore.inserted)
    build_chat_prompt(plain, counter, None, 4096, 512)
    rows: dict[str, list[float]] = {"without": [], "with": [], "scan only": [], "first turn without": [],
                                    "first turn with": []}
    for _ in range(args.rounds):
        rows["without"].append(timed(lambda: build_chat_prompt(plain, counter, None, 4096, 512)))
        rows["with"].append(timed(lambda: build_chat_prompt(with_book, counter, None, 4096, 512)))
        rows["scan only"].append(timed(lambda: triggered([book], msgs)))
        rows["first turn without"].append(timed(lambda: build_chat_prompt(plain, TokenCounter(encode), None,
                                                                          4096, 512)))
        rows["first turn with"].append(timed(lambda: build_chat_prompt(with_book, TokenCounter(encode), None,
                                                                       4096, 512)))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{args.messages} messages, {args.entries} entries, {args.hits} triggered "
          f"({first.lore.tokens} tokens of lore), {args.rounds} rounds, median ms")
    for name, ms in med.items():
        print(f"  {name:18s} {ms:8.2f}")
    print(f"  {'with / without':18s} {med['with'] / med['without']:8.2f}")
    print(f"  {'first turn ratio':18s} {med['first turn with'] / med['first turn without']:8.2f}")
    llm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
