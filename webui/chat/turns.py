"""Submitting a chat reply to the generation queue: the template rendered ahead, the
history fitted late.

The prompt of a chat turn is a `DeferredChatPrompt`: a sequence of token ids that is
only computed when the generation worker first reads it, which it does while it
holds the model. So the history is fitted with the tokenizer and context size of the
model that really runs the turn (even if another model was loaded while the turn
waited in the queue), and tokenizing never races a model being unloaded.

Rendering the template, which may be a stranger's program, is done before that, in
the submitting thread (a UI handler, an API request's thread): `submit_chat_turn`
renders what fitting will most likely ask for (prompts.py `prerender_chat_prompt`),
within the turn's time limit, before the job is queued. The worker then finds the
texts (or the template's one-line error) ready and only tokenizes. It renders itself
only when the history must be shortened or another model was loaded meanwhile, and
then within what is left of the same limit, stopped at once by the job's Stop. So a
hostile template costs its sender the limit (2 s) and holds the worker, which every
UI and API request waits on, for no time in the common case and for at most the
limit otherwise.

Why not render the whole prompt in the submitting thread: fitting needs token
counts, and the tokenizer belongs to the worker (a model may be unloaded under any
other thread). The cost of this split is that Stop cannot end the rendering done
ahead (there is no job to stop yet); it lasts at most the limit, and then the job is
queued already failed or Stop works as usual.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from typing import overload

from loaders.params import GenerationParams
from webui.chat.context import TokenCounters, reply_reserve
from webui.chat.prompts import ChatPrompt, ChatRequest, build_chat_prompt, prerender_chat_prompt
from webui.chat.reasoning import markers_for
from webui.chat.template_fallback import model_facts, template_of
from webui.chat.templates import TemplateRenderer
from webui.runtime.generation import GenerationEngine, GenerationJob
from webui.runtime.model_manager import LoadedModel, ModelManager, NoModelLoaded


class DeferredChatPrompt(Sequence[int]):
    def __init__(self, models: ModelManager, token_counters: TokenCounters, request: ChatRequest,
                 max_new_tokens: int):
        self._models = models
        self._token_counters = token_counters
        self.request = request
        self._max_new_tokens = max_new_tokens
        self.built: ChatPrompt | None = None  # set once the worker has read the prompt
        self.cancel: threading.Event | None = None  # the job's Stop, once it has one
        self._renderer = TemplateRenderer(stopped=self._stopped)
        self._rendered_for: LoadedModel | None = None

    def _stopped(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def render_ahead(self) -> None:
        """Render the template for the model loaded now, in the calling thread."""
        loaded = self._models.current
        if loaded is None:
            return  # the worker says so, in one line
        self._rendered_for = loaded
        prerender_chat_prompt(self.request, loaded.model.chat_template, self._renderer,
                              model_facts(loaded.model, loaded.name))

    def _ids(self) -> list[int]:
        if self.built is None:
            loaded = self._models.current
            if loaded is None:
                raise NoModelLoaded("no model is loaded: load one in the Model tab")
            model = loaded.model
            if loaded is not self._rendered_for:
                # Another model since: its template gets a limit of its own.
                self._renderer = TemplateRenderer(stopped=self._stopped)
            counter = self._token_counters.for_model(loaded, model.encode)
            reserve = reply_reserve(model.context_length, self._max_new_tokens)
            # A ChatTemplateError or ContextOverflow travels as it is: the queue
            # carries the error object, and each face shows its kind.
            try:
                self.built = build_chat_prompt(self.request, counter, model.chat_template,
                                               model.context_length, reserve, self._renderer,
                                               model_facts(model, loaded.name))
            finally:
                self._renderer.forget()
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
    # The markers of the template in use end the reply, besides the model's own
    # end-of-turn token: a model that was not trained on them runs on into the next turn.
    loaded = engine.manager.current
    template = request.template or (template_of(loaded).template if loaded is not None else None)
    extra = tuple(s for s in request.stop_strings(template) if s not in params.stop)
    if extra:
        params = dataclasses.replace(params, stop=params.stop + extra)
    prompt = DeferredChatPrompt(engine.manager, token_counters, request, params.max_new_tokens)
    prompt.render_ahead()
    job = engine.submit(prompt, params)
    job.reasoning_markers = markers_for(template.source if template is not None else None)  # chat/reasoning.py
    # The worker may already be reading the prompt; a render it runs looks at Stop
    # every 50 ms, so it sees this within that.
    prompt.cancel = job.cancel
    return job
