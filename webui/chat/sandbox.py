"""The Jinja2 sandbox that chat templates are rendered in.

Templates are untrusted input (they come inside downloaded model files, and users
paste them), so they are rendered in Jinja2's immutable sandbox: no access to Python
internals, no mutation of the objects we pass in, and a bound on the output size.
Where stock Jinja would quietly render an unsafe attribute as empty text, we stop
with an error, so a hostile template is reported instead of half-working.

The sandbox alone bounds neither time nor memory (nested loops over a long message,
a string doubled in a loop): `render_in_sandbox` runs in this process only for
Hearth's built-in templates; every other template is rendered by a render process
that can be killed (render_pool.py, render_worker.py).
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from webui.errors import ErrorKind, UserError

# One prompt can hold at most a context's worth of text; a template that produces
# megabytes is broken or hostile.
MAX_OUTPUT_CHARS = 4_000_000
MAX_REPEAT_CHARS = 100_000


class ChatTemplateError(UserError, ValueError):
    """A chat template failed to render; one line for the user."""

    kind = ErrorKind.INVALID


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:  # used by Llama 3.1+ templates
    return datetime.now().strftime(fmt)


class _HearthSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str):
        # Stock Jinja returns an Undefined that renders as "", so `{{ x.__class__ }}`
        # would pass silently. A template that reaches for internals is refused.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} "
                            "object is unsafe")

    def call_binop(self, context, operator_: str, left: Any, right: Any) -> Any:
        # 'x' * 10**9 or 9**9**9 would eat the server's memory or CPU.
        if operator_ == "**":
            if isinstance(right, int) and abs(right) > 64:
                raise ChatTemplateError("the chat template raised a number to a huge power; it was stopped")
            return operator.pow(left, right)
        size = max(_repeat_size(left, right), _repeat_size(right, left))
        if size > MAX_REPEAT_CHARS:
            raise ChatTemplateError(f"the chat template tried to build a sequence of {size} items; "
                                    "it was stopped")
        return operator.mul(left, right)


def _repeat_size(seq: Any, n: Any) -> int:
    if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
        return len(seq) * n
    return 0


@lru_cache(maxsize=32)
def _compile(template: str):
    env = _HearthSandbox(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except JinjaTemplateError as e:
        raise ChatTemplateError(f"the chat template has a syntax error: {e}") from None


def render_in_sandbox(template: str, messages: Sequence[dict[str, Any]], *,
                      add_generation_prompt: bool = True, bos_token: str = "",
                      eos_token: str = "", **extra: Any) -> str:
    """Render in this process: bounded in output, not in time or memory."""
    compiled = _compile(template)
    try:
        parts, size = [], 0
        for piece in compiled.generate(messages=[dict(m) for m in messages],
                                       add_generation_prompt=add_generation_prompt,
                                       bos_token=bos_token, eos_token=eos_token, **extra):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise ChatTemplateError(f"the chat template produced more than {MAX_OUTPUT_CHARS} "
                                        "characters; it was stopped")
            parts.append(piece)
        return "".join(parts)
    except SecurityError as e:
        raise ChatTemplateError(f"the chat template tried to reach Python internals ({e}); "
                                "it was stopped") from None
    except ChatTemplateError:
        raise
    except (JinjaTemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError,
            OverflowError, RecursionError) as e:
        raise ChatTemplateError(f"the chat template failed: {type(e).__name__}: {e}") from None
