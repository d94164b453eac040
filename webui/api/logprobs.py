"""OpenAI's `logprobs` on /v1/chat/completions and /v1/completions: what a request
asks for (a LogprobsRequest for the engine) and the tokens' log-probabilities in each
endpoint's shape, whole or a chunk at a time.

Chat: `choices[].logprobs.content`, a list of {token, logprob, bytes, top_logprobs}.
Completions: `choices[].logprobs` = {tokens, token_logprobs, top_logprobs (dicts),
text_offset}; with echo the prompt's tokens come first, the first one's logprob null.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loaders.logprobs import TokenLogprob
from webui.api.errors import APIError
from webui.runtime.generation import LogprobsRequest


def chat_request(logprobs: bool | None, top_logprobs: int | None) -> LogprobsRequest | None:
    if top_logprobs and not logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs", code="invalid_value")
    return LogprobsRequest(top=top_logprobs or 0) if logprobs else None


def completion_request(logprobs: int | None, echo: bool, max_tokens: int | None) -> LogprobsRequest | None:
    """max_tokens=0 with echo is how evaluation harnesses score a text: the prompt's
    logprobs, nothing generated."""
    if max_tokens == 0:
        if not echo:
            raise APIError(400, "max_tokens=0 generates nothing: it needs echo: true (to score the prompt)",
                           param="max_tokens", code="invalid_value")
        return LogprobsRequest(top=logprobs or 0, prompt=logprobs is not None, reply=False)
    if logprobs is None:
        return None
    return LogprobsRequest(top=logprobs, prompt=echo)


class LogprobsShape:
    """One reply's tokens in its endpoint's shape; for completions, text_offset runs on
    from `offset` (0 with echo, where the prompt's tokens come first; else the prompt's
    length, as OpenAI counts it)."""

    def __init__(self, chat: bool, offset: int = 0):
        self.chat = chat
        self._offset = offset

    def of(self, tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
        return self._chat(tokens) if self.chat else self._completion(tokens)

    @staticmethod
    def _chat(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
        return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.raw),
                             "top_logprobs": [{"token": text, "logprob": lp, "bytes": list(raw)}
                                              for text, raw, lp in t.top]}
                            for t in tokens]}

    def _completion(self, tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
        offsets = []
        for t in tokens:
            offsets.append(self._offset)
            self._offset += len(t.token)
        return {"tokens": [t.token for t in tokens],
                "token_logprobs": [t.logprob for t in tokens],
                "top_logprobs": [None if t.logprob is None else {text: lp for text, _, lp in t.top} for t in tokens],
                "text_offset": offsets}
