"""Search across chats (webui/chat/search.py) over a folder of many chats, against the
plain way in the same run: parse every chat file and look in every message.

Makes N chats (several characters, M messages of ~300 characters each) in a temp
folder, then times queries that match a few chats, many chats, and none. Rounds are
interleaved (plain, Hearth, plain, ...) so noise on a shared machine hits both alike.

    .venv/bin/python bench/chat_search.py [--chats 1000] [--messages 20] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webui.chat.histories import HistoryStore  # noqa: E402
from webui.chat.search import MAX_HITS, search_chats  # noqa: E402
from webui.userdata.folders import UserData  # noqa: E402

WORDS = ("the river keeps a quiet count of every stone it passes while lanterns sway over "
         "market stalls and traders argue about the price of salt and amber").split()


def make_chats(user_data: UserData, chats: int, messages: int) -> None:
    rng = random.Random(7)
    store = HistoryStore(user_data.histories)
    for i in range(chats):
        h = store.new(("Ember", "Seraphina", "Assistant")[i % 3])
        for j in range(messages):
            text = " ".join(rng.choice(WORDS) for _ in range(55))
            if i % 100 == 0 and j == messages // 2:
                text += " the lighthouse keeper"  # in 1 chat of 100
            h.messages.append({"role": "user" if j % 2 == 0 else "assistant", "content": text})
        store.save(h)


def plain_search(user_data: UserData, query: str, limit: int = MAX_HITS) -> int:
    """Every file parsed, every message looked at (what search.py avoids)."""
    words = query.lower().split()
    paths = sorted(user_data.histories.glob("*/*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    found = 0
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        texts = [data["title"].lower()] + [m["content"].lower() for m in data["messages"]]
        if all(any(w in t for t in texts) for w in words):
            found += 1
            if found >= limit:
                break
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hearth-search-bench-") as folder:
        user_data = UserData.at(folder)
        make_chats(user_data, args.chats, args.messages)
        size = sum(p.stat().st_size for p in user_data.histories.glob("*/*.json"))
        print(f"{args.chats} chats, {args.messages} messages each, {size / 1e6:.1f} MB of JSON")
        queries = {"rare (1 chat in 100)": "lighthouse keeper", "common (every chat)": "amber salt",
                   "absent": "zeppelin"}
        for label, query in queries.items():
            plain, ours = [], []
            for _ in range(args.rounds):
                t = time.perf_counter()
                n_plain = plain_search(user_data, query)
                plain.append(time.perf_counter() - t)
                t = time.perf_counter()
                n_ours = len(search_chats(user_data, query))
                ours.append(time.perf_counter() - t)
            assert n_plain == n_ours, (label, n_plain, n_ours)
            p, o = statistics.median(plain), statistics.median(ours)
            print(f"{label:22s} {n_ours:3d} hits  plain {p * 1000:7.1f} ms  Hearth {o * 1000:7.1f} ms  "
                  f"ratio {o / p:.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
