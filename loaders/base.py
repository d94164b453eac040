"""The one contract every backend implements.

A `Loader` turns a path plus its `Options` into a `Model`; a `Model` turns prompt
token ids into a stream of text pieces. Stop strings, token counting, queueing and
streaming to a screen are done once, in webui's core, for every backend.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from loaders.errors import ErrorKind, UserError
from loaders.load_progress import LoadProgress, no_progress
from loaders.logprobs import TokenLogprob
from loaders.params import GenerationParams


class LoadError(UserError, RuntimeError):
    """A model could not be loaded; the message is one line a user can act on."""

    kind = ErrorKind.FAILED


class GenerationError(UserError, RuntimeError):
    """Generation failed; the message is one line a user can act on."""

    kind = ErrorKind.FAILED


@runtime_checkable
class Model(Protocol):
    context_length: int
    chat_template: str | None
    supported_params: frozenset[str]
    # Prompt tokens the last `generate` call actually evaluated, after reusing what
    # was already in the KV cache; set before its first yield.
    last_prompt_eval_tokens: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def generate(
        self, prompt_ids: Sequence[int], params: GenerationParams, cancel: threading.Event
    ) -> Iterator[str]:
        """Yield exactly one text piece per sampled token (possibly '' while a
        multi-byte character is incomplete), ending at end-of-sequence,
        `params.max_new_tokens`, or soon after `cancel` is set."""
        ...

    def unload(self) -> None: ...


@runtime_checkable
class TokenLogprobs(Protocol):
    """Optional capability of a Model: log-probabilities from its raw logits (before
    samplers), as OpenAI's `logprobs` reports them. A backend without it answers
    logprobs requests with a one-line error."""

    def token_logprobs(self, top: int) -> TokenLogprob:
        """The token `generate` has just yielded and the `top` likeliest at its
        position; called between that yield and the next."""
        ...

    def prompt_logprobs(self, ids: Sequence[int], top: int) -> list[TokenLogprob]:
        """Each of `ids`' log-probability given the ones before it (the first's is None)."""
        ...


@runtime_checkable
class TextEmbeddings(Protocol):
    """Optional capability of a Model (and what the built-in MiniLM encoder is): texts
    into unit vectors. `can_embed` is False for a model of a backend that could embed
    but was not loaded as an embedding model."""
    can_embed: bool
    dimensions: int
    vocab_size: int
    max_tokens: int  # longer texts are cut; longer token-id inputs are refused

    def embed(self, texts: list[str]) -> Any:
        """(len(texts), dimensions) float32, each row of length 1."""
        ...

    def embed_ids(self, sequences: list[list[int]]) -> Any: ...

    def count_tokens(self, texts: list[str]) -> int: ...


class Loader(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type]
    description: ClassVar[str]

    def can_load(self, path: Path) -> bool: ...

    def load(self, path: Path, options, progress: LoadProgress = no_progress) -> Model:
        """Load the model at `path`. While loading, call `progress(fraction, phase)`
        whenever the backend can tell how far it has got (loaders/load_progress.py);
        a backend that cannot tell may never call it."""
        ...
