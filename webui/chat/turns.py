"""Submitting a chat reply to the generation queue, with the prompt built late.

The prompt of a chat turn is a `DeferredChatPrompt`: a sequence of token ids that is
only computed when the generation worker first reads it, which it does while it
holds the model. So the history is fitted with the tokenizer, template and context
size of the model that really runs the turn (even if another model was loaded while
the turn waited in the queue), and tokenizing never races a model being unloaded.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence, overload

from loaders.params import GenerationParams
from webui.chat.context import TokenCounters, reply_reserve
from webui.chat.prompts import ChatPrompt, ChatRequest, build_chat_prompt
from webui.runtime.generation import GenerationEngine, GenerationJob
from webui.runtime.model_manager import ModelManager, NoModelLoaded


class DeferredChatPrompt(Sequence[int]):
    def __init__(self, models: ModelManager, token_counters: TokenCounters, request: ChatRequest,
                 max_new_tokens: int):
        self._models = models
        self._token_counters = token_counters
        self.request = request
        self._max_new_tokens = max_new_tokens
        self.built: ChatPrompt | None = None  # set once the worker has read the prompt

    def _ids(self) -> list[int]:
        if self.built is None:
            loaded = self._models.current
            if loaded is None:
                raise NoModelLoaded("no model is loaded: load one in the Model tab")
            model = loaded.model
            counter = self._token_counters.for_model(loaded, model.encode)
            reserve = reply_reserve(model.context_length, self._max_new_tokens)
            # A ChatTemplateError or ContextOverflow travels as it is: the queue
            # carries the error object, and each face shows its kind.
            self.built = build_chat_prompt(self.request, counter, model.chat_template,
                                           model.context_length, reserve)
        return self.built.ids

    def __len__(self) -> int:
        return len(self._ids())

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[int]: ...
    def __getitem__(self, i):
        return self._ids()[i]

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids())

    def __repr__(self) -> str:  # never build the prompt just to print a job
        state = f"{len(self.built.ids)} tokens" if self.built else "not built yet"
        return f"DeferredChatPrompt({self.request.mode}, {len(self.request.messages)} messages, {state})"


def submit_chat_turn(engine: GenerationEngine, token_counters: TokenCounters, request: ChatRequest,
                     params: GenerationParams) -> GenerationJob:
    # With the model's own template (request.template None) the model's end-of-turn
    # token ends the reply; a built-in template also names its end marker.
    extra = tuple(s for s in request.stop_strings(request.template) if s not in params.stop)
    if extra:
        params = dataclasses.replace(params, stop=params.stop + extra)
    prompt = DeferredChatPrompt(engine.manager, token_counters, request, params.max_new_tokens)
    return engine.submit(prompt, params)
