"""Whether a prompt fits a model's context, said one way everywhere: core's generation
worker checks before it calls a backend, each backend checks again (a backend can be
driven directly, by the benchmark and by tests), and the chat's history fitting uses
the same words for a prompt that leaves no room for the reply.
"""
from __future__ import annotations

from loaders.base import GenerationError


def overflow(prompt_tokens: int, context_length: int, reserve: int = 1) -> str | None:
    """Why a prompt of `prompt_tokens` does not leave `reserve` tokens of the context
    free for the reply; None when it does."""
    if prompt_tokens + reserve <= context_length:
        return None
    kept = f" with {reserve} kept for the reply" if reserve > 1 else ""
    return (f"the prompt is {prompt_tokens} tokens but the context holds {context_length}{kept}; "
            "shorten it or load the model with a longer context")


def check_fits(prompt_tokens: int, context_length: int) -> int:
    """The room left for the reply (at least one token); a GenerationError if none."""
    message = overflow(prompt_tokens, context_length)
    if message is not None:
        raise GenerationError(message)
    return context_length - prompt_tokens
