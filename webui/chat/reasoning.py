"""A reasoning model's thinking, split from its answer as the reply streams.

Reasoning models write their thinking between two markers (`<think>` ... `</think>` for
Qwen3, DeepSeek-R1 and most others) before the answer. The markers are read from the
chat template (`markers_for`); `ReasoningSplitter` takes the reply's text pieces as they
come and hands back (reasoning, content) pieces, whatever the token boundaries: a marker
split over two pieces is held back until the next piece says what it is.

Only a reply that opens with the marker (leading whitespace aside) is thinking, as
llama.cpp's server reads it: a model that writes "<think>" in the middle of an answer
is quoting it. Templates that open the thinking themselves in the generation prompt
(DeepSeek-R1's, Qwen3's with enable_thinking) make a reply that starts inside it; the
caller says so with `starts_inside` (`ReasoningFormat.for_prompt` reads it from the
rendered prompt). Thinking never closed by the end of the reply is all reasoning.
"""
from __future__ import annotations

from dataclasses import dataclass

# (open, close) pairs of models in use, most specific first: the first whose closing
# marker the template's text names is the template's; none named means <think>.
KNOWN_MARKERS: tuple[tuple[str, str], ...] = (
    ("<seed:think>", "</seed:think>"),  # ByteDance Seed-OSS
    ("<|begin_of_thought|>", "<|end_of_thought|>"),  # Bespoke/OpenThoughts-style
    ("◁think▷", "◁/think▷"),  # Kimi
    ("[THINK]", "[/THINK]"),  # Mistral Magistral
    ("<thinking>", "</thinking>"),
    ("<think>", "</think>"),  # Qwen3, DeepSeek-R1, QwQ, GLM-4.5, SmolLM3, Phi-4-reasoning
)
DEFAULT_MARKERS = KNOWN_MARKERS[-1]


def markers_for(template_source: str | None) -> tuple[str, str]:
    """The thinking markers a chat template uses (<think> pair when it names none)."""
    source = template_source or ""
    return next(((o, c) for o, c in KNOWN_MARKERS if c in source), DEFAULT_MARKERS)


def supports_thinking_switch(template_source: str | None) -> bool:
    """Whether a template reads `enable_thinking` (Qwen3, SmolLM3, GLM-4.5 and the like)."""
    return "enable_thinking" in (template_source or "")


@dataclass(frozen=True)
class ReasoningFormat:
    """How one reply's thinking is marked: the markers, and whether the prompt opened them."""

    open: str = DEFAULT_MARKERS[0]
    close: str = DEFAULT_MARKERS[1]
    starts_inside: bool = False

    @classmethod
    def for_prompt(cls, template_source: str | None, prompt: str) -> ReasoningFormat:
        """The template's markers; `starts_inside` when the rendered prompt ends by opening them."""
        open_, close = markers_for(template_source)
        return cls(open_, close, prompt.rstrip().endswith(open_))

    def splitter(self) -> ReasoningSplitter:
        return ReasoningSplitter(self.open, self.close, self.starts_inside)


_START, _THINKING, _CONTENT_START, _CONTENT = range(4)


class ReasoningSplitter:
    """A streaming state machine: text pieces in, (reasoning, content) pieces out.

    Whitespace around the thinking (Qwen3 writes "<think>\\n...\\n</think>\\n\\n") goes to
    neither part: it is held back until text follows it inside the thinking, and dropped
    before the answer's first character."""

    def __init__(self, open_marker: str = DEFAULT_MARKERS[0], close_marker: str = DEFAULT_MARKERS[1],
                 starts_inside: bool = False):
        self.open = open_marker
        self.close = close_marker
        self.state = _THINKING if starts_inside else _START
        self.pending = ""
        self.reasoning_started = False  # whether any reasoning text has left (leading whitespace is dropped)
        self.thought = starts_inside  # whether this reply had a thinking part

    def feed(self, piece: str) -> tuple[str, str]:
        self.pending += piece
        reasoning, content = [], []
        while True:
            text = self.pending
            if self.state == _START:
                head = text.lstrip()
                if head.startswith(self.open):
                    self.state, self.thought, self.pending = _THINKING, True, head[len(self.open):]
                    continue
                if head and self.open.startswith(head):
                    break  # maybe the marker, not whole yet
                if not head:
                    break  # only whitespace so far: it may come before the marker
                self.state = _CONTENT
                continue
            if self.state == _THINKING:
                end = text.find(self.close)
                if end != -1:
                    reasoning.append(self._reasoning(text[:end].rstrip()))
                    self.state, self.pending = _CONTENT_START, text[end + len(self.close):]
                    continue
                keep = _partial_suffix(text, self.close)
                body = text[:len(text) - keep]
                safe = body.rstrip()  # trailing whitespace may be the last before the marker
                reasoning.append(self._reasoning(safe))
                self.pending = text[len(safe):]
                break
            if self.state == _CONTENT_START:
                head = text.lstrip()
                if not head:
                    self.pending = ""
                    break
                self.state, self.pending = _CONTENT, head
                continue
            content.append(text)
            self.pending = ""
            break
        return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        """What is held back once the reply has ended: unclosed thinking is reasoning."""
        text, self.pending = self.pending, ""
        if self.state == _THINKING:
            return self._reasoning(text.rstrip()), ""
        if self.state == _START:
            return "", text
        return "", text if self.state == _CONTENT else ""

    def _reasoning(self, text: str) -> str:
        if not self.reasoning_started:
            text = text.lstrip()
            self.reasoning_started = bool(text)
        return text


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest end of `text` that begins `marker` (held back: it may be it)."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


def split_reasoning(text: str, fmt: ReasoningFormat | None = None) -> tuple[str, str]:
    """A whole reply's (reasoning, content)."""
    splitter = (fmt or ReasoningFormat()).splitter()
    r1, c1 = splitter.feed(text)
    r2, c2 = splitter.finish()
    return r1 + r2, c1 + c2


__all__ = ["DEFAULT_MARKERS", "KNOWN_MARKERS", "ReasoningFormat", "ReasoningSplitter", "markers_for",
           "split_reasoning", "supports_thinking_switch"]
