"""A GBNF grammar looked over in pure Python before llama.cpp parses it.

llama.cpp parses a grammar by recursive descent, one C stack frame set per nested
group, and expands each repetition by copying the repeated item. Both happen in
native code that Python cannot stop or catch, so what they are given is bounded here
first, with one line that names the bound:

- Nesting. Measured with the vendored llama-cpp-python 0.3.36 in a child process,
  building `root ::= ((( ... "a" ... )))` in a thread as the generation worker does:
  about 455 bytes of C stack per level; on the default 8 MiB thread stack 18,593
  levels parse and 18,750 crash the process (SIGSEGV); on a 512 KiB stack (macOS's
  for threads) it crashes at 1,167. 128 levels need about 58 KiB: safe even on musl's
  128 KiB thread stacks, and real grammars nest a handful of levels.
- Repetitions. `"x"{2000}` copies "x" 2,000 times; a 30,000-character literal
  repeated so took 1.1 GB and 3.5 s (about 18 bytes a symbol). The expanded size is
  estimated here and held to MAX_SYMBOLS; counts above llama.cpp's own limit (2,000)
  are refused here in the same words as other bounds.
- Rules: every named rule, group and repetition becomes a rule in llama.cpp.

The scan skips quoted strings, character classes (escapes included) and comments,
and never recurses, so it cannot itself run out of stack.
"""
from __future__ import annotations

import re

from loaders.fields import SettingError

MAX_GRAMMAR_CHARS = 64 * 1024  # declared on GenerationParams.grammar
MAX_NESTING = 128
MAX_RULES = 4096
MAX_REPEAT = 2000  # llama.cpp's MAX_REPETITION_THRESHOLD: "a"{2001} is refused there
MAX_SYMBOLS = 1_000_000  # about 18 MB in llama.cpp's rule vectors at the measured 18 bytes a symbol

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<charclass>\[(?:[^\]\\]|\\.)*\])
  | (?P<comment>\#[^\n]*)
  | (?P<define>::=)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<repeat>\{\s*(?P<low>\d*)\s*(?P<comma>,)?\s*(?P<high>\d*)\s*\})
  | (?P<suffix>[*+?])
  | (?P<name>[A-Za-z0-9_-]+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def check_grammar(text: str) -> None:
    """Raise SettingError (one line) if `text` nests, repeats or defines more than
    llama.cpp can take safely; a grammar that is merely malformed passes here and is
    refused by llama.cpp's own parser, which is safe for it."""
    depth = rules = symbols = 0
    last_item = 1  # symbols in the item a repetition would copy
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("string", "charclass"):
            last_item = max(1, len(m.group()) - 2)
            symbols += last_item
        elif kind == "open":
            depth += 1
            rules += 1
            if depth > MAX_NESTING:
                raise SettingError(f"the grammar nests groups more than {MAX_NESTING} deep")
        elif kind == "close":
            depth = max(0, depth - 1)
            last_item = 1  # a group becomes a reference to a rule of its own
            symbols += 1
        elif kind == "repeat":
            low = int(m.group("low") or 0)
            high = int(m.group("high")) if m.group("high") else None
            times = max(low, high or 0)
            if times > MAX_REPEAT:
                raise SettingError(f"the grammar repeats an item {times:,} times; at most {MAX_REPEAT:,} are allowed")
            symbols += last_item * times
            rules += max(1, (high - low) if high is not None else 1)
        elif kind == "suffix":
            symbols += last_item
            rules += 1
        elif kind == "define":
            rules += 1
        elif kind == "name":
            last_item = 1
            symbols += 1
        if rules > MAX_RULES:
            raise SettingError(f"the grammar has more than {MAX_RULES:,} rules "
                               "(named ones, and those its groups and repetitions make)")
        if symbols > MAX_SYMBOLS:
            raise SettingError(f"the grammar expands to more than {MAX_SYMBOLS:,} symbols "
                               "(long items repeated many times)")
