"""Fitting a chat history into the model's context.

When a history outgrows the context, the oldest turns are dropped; the system
prompt and the character always stay. What keeps this cheap:

- every message's token count is cached (keyed by its text), so a message is
  tokenized once in its life, not once per turn;
- the window is found by walking back from the newest message and stops as soon as
  the context is full, so a turn looks only at the messages that end up in the
  prompt (plus one). The work per turn is bounded by the context size, whatever the
  history's length; only saving the history (a file write) grows with it.

The sum of cached counts is an estimate (tokens can merge across message borders);
the caller checks the rendered prompt once with the real tokenizer and drops one
more turn in the rare case the estimate was short.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from webui.errors import ErrorKind, UserError


class TokenCounter:
    """Token counts for one model's tokenizer, remembered per text."""

    def __init__(self, encode: Callable[[str], Sequence[int]], capacity: int = 200_000):
        self._encode = encode
        self._capacity = capacity
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        # What the tokenizer adds to every call (a BOS token), not part of the text.
        self._baseline = len(encode(""))
        self.tokenized = 0  # texts actually tokenized (for tests and the benchmark)
        self.memo: dict[Any, Any] = {}  # small per-model facts, e.g. template overheads

    def count(self, text: str) -> int:
        with self._lock:
            n = self._counts.get(text)
            if n is not None:
                self._counts.move_to_end(text)
                return n
        n = max(len(self._encode(text)) - self._baseline, 0)
        with self._lock:
            self.tokenized += 1
            self._counts[text] = n
            if len(self._counts) > self._capacity:
                self._counts.popitem(last=False)
        return n

    def estimate(self, text: str) -> int:
        """The cached count, else ~4 characters a token, without tokenizing: for texts a
        turn does not use (the budget view's dropped history), so its work stays bounded."""
        with self._lock:
            n = self._counts.get(text)
        return n if n is not None else len(text) // 4

    def encode(self, text: str) -> list[int]:
        """The real token ids of a whole prompt (not cached: prompts change every turn)."""
        return list(self._encode(text))


class TokenCounters:
    """One TokenCounter per loaded model; a new model gets a fresh cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: Any = None
        self._counter: TokenCounter | None = None

    def for_model(self, owner: Any, encode: Callable[[str], Sequence[int]]) -> TokenCounter:
        with self._lock:
            if self._counter is None or self._owner is not owner:
                self._owner, self._counter = owner, TokenCounter(encode)
            return self._counter


@dataclass(frozen=True)
class Window:
    start: int  # index of the oldest message kept
    tokens: int  # estimated tokens of the kept messages


class ContextOverflow(UserError, ValueError):
    """Even the newest message does not fit beside the fixed part of the prompt."""

    kind = ErrorKind.TOO_LARGE


def fit_history(n_messages: int, cost_of: Callable[[int], int], budget: int,
                can_start_at: Callable[[int], bool] = lambda i: True) -> Window:
    """The largest suffix of the history whose cost fits `budget`.

    `cost_of(i)` is message i's (cached) token cost; `can_start_at(i)` says whether
    the window may open at message i, so that it opens on a whole turn rather than
    on a reply whose question was dropped."""
    used = 0
    start = n_messages
    while start > 0:
        cost = cost_of(start - 1)
        if used + cost > budget:
            break
        used += cost
        start -= 1
    while start < n_messages and not can_start_at(start):
        used -= cost_of(start)
        start += 1
    if n_messages and start >= n_messages:
        raise ContextOverflow(
            f"the newest message needs about {cost_of(n_messages - 1)} tokens but only "
            f"{max(budget, 0)} are free beside the system prompt and character")
    return Window(start, used)


def reply_reserve(context_length: int, max_new_tokens: int) -> int:
    """Room kept free for the reply. Half the context at most, so a max_new_tokens
    larger than the context still leaves room for the conversation."""
    return max(1, min(max_new_tokens, context_length // 2))
