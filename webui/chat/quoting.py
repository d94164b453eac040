"""Text from outside the conversation (a tool's result, an attached file) enters the
prompt as quoted data, never as instructions.

It may say "ignore your instructions". So it is fenced in tags that it cannot close
itself, after a line telling the model that nothing inside is an instruction. The
text is NFKC-normalized first (so fullwidth ＜／ｔａｇ＞ becomes a tag we see),
invisible format characters (zero-width spaces) are dropped, and the bracket of any
tag of ours inside is replaced by "&lt;". The one copy of this fencing: the tools'
results (webui/tools/quoting.py) and the chat's attachments (attachments.py) use it.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Every fence Hearth writes: a quoted text may close none of them, whichever it is in.
FENCE_TAGS = ("tool_result", "tool_response", "attachment")
_QUOTES = re.compile(r'["“”„‟″〃＂]')


def _tag_pattern(tags: Iterable[str]) -> re.Pattern[str]:
    names = "|".join(re.escape(t) for t in tags)
    return re.compile(rf"<(?=\s*/?\s*(?:{names}))", re.IGNORECASE)


_FENCES = _tag_pattern(FENCE_TAGS)


def fence(text: str) -> str:
    """`text` with anything that could open or close one of our fences defused."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _FENCES.sub("&lt;", text)


def attribute(value: str) -> str:
    """`value` inside a double-quoted attribute: no quote of any look can end it."""
    return _QUOTES.sub("'", fence(value).replace("\n", " "))


def quoted(tag: str, attributes: dict[str, str], text: str) -> str:
    """`text` fenced in <tag ...>...</tag>; the caller writes the preamble."""
    assert tag in FENCE_TAGS, tag
    attrs = "".join(f' {k}="{attribute(v)}"' for k, v in attributes.items())
    return f"<{tag}{attrs}>\n{fence(text)}\n</{tag}>"
