"""Chat templates are untrusted input (they come inside downloaded model files), so
they are rendered in Jinja2's immutable sandbox: no attribute access to Python
internals, no mutation of the objects we pass in."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    """A chat template failed to render; one line for the user."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {message}")


@lru_cache(maxsize=32)
def _compile(template: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    try:
        return env.from_string(template)
    except JinjaTemplateError as e:
        raise ChatTemplateError(f"the chat template has a syntax error: {e}") from None


def render_chat_prompt(template: str, messages: Sequence[dict[str, Any]], *,
                       add_generation_prompt: bool = True, bos_token: str = "",
                       eos_token: str = "", **extra: Any) -> str:
    compiled = _compile(template)
    try:
        return compiled.render(messages=[dict(m) for m in messages],
                               add_generation_prompt=add_generation_prompt,
                               bos_token=bos_token, eos_token=eos_token, **extra)
    except SecurityError as e:
        raise ChatTemplateError(f"the chat template tried to reach Python internals ({e}); "
                                "it was stopped") from None
    except ChatTemplateError:
        raise
    except (JinjaTemplateError, TypeError, ValueError, KeyError, IndexError) as e:
        raise ChatTemplateError(f"the chat template failed: {type(e).__name__}: {e}") from None
