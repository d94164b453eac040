"""Stop strings, matched on text as it streams, whatever the token boundaries.

Text that might be the start of a stop string is held back until the next piece
shows whether it is one; everything else is released at once, so streaming stays
smooth and no stop string ever reaches the user, even in part.
"""
from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Return the text that is now safe to show."""
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text = self.pending + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i != -1), default=-1)
        if cut != -1:
            self.stopped = True
            self.pending = ""
            return text[:cut]
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:k]):
                    hold = k
                    break
        self.pending = text[len(text) - hold:] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """At the end of generation, held-back text was not a stop after all."""
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out
