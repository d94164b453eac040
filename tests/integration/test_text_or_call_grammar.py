"""The text-or-call grammar of tool_choice auto (webui/chat/structured.py), run by
llama.cpp's own grammar sampler over the built-in model's vocabulary, token by token as
loaders/grammar_sampler.py checks a sampled token: free text passes and may end
anywhere, and once a format's marker (or a bare form's "{") begins a call, only a call
of one of the tools with arguments that match its schema does."""
from __future__ import annotations

import ctypes
import dataclasses
import json
import math

import llama_cpp
import pytest

from loaders.params import GenerationParams
from webui.chat.structured import response_format_grammar, text_or_call_grammar
from webui.chat.tools import CALL_SHAPES, check_tool_request, plan_tools, template_source

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                           "days": {"type": "integer"}},
          "required": ["city", "days"], "additionalProperties": False}
TOOLS = [{"name": "get_weather", "parameters": SCHEMA},
         {"name": "get_time", "parameters": {"type": "object", "properties": {}}}]


def _call(key: str = "arguments", name: str = "get_weather", **args) -> str:
    if not args and name == "get_weather":
        args = {"city": "Paris", "days": 2}
    return json.dumps({"name": name, key: args})


def follows(hearth, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write `text` and then end."""
    llm = hearth.models.current.model._llm
    vocab = llm._model.vocab
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler, "llama.cpp did not parse the grammar"
    one = llama_cpp.llama_token_data(0, 1.0, 0.0)
    candidates = llama_cpp.llama_token_data_array(ctypes.pointer(one), 1, -1, False)

    def allowed(token: int) -> bool:
        one.id, one.logit, one.p = token, 1.0, 0.0
        candidates.size, candidates.selected, candidates.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        return one.logit != -math.inf

    try:
        for token in llm.tokenize(text.encode(), add_bos=False, special=True):
            if not allowed(token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return allowed(llama_cpp.llama_vocab_eos(vocab))
    finally:
        llama_cpp.llama_sampler_free(sampler)


CASES = [
    # hermes: <tool_call> opens calls anywhere; text may hold other tags and partial markers.
    ("hermes", "Paris is sunny, <b>22 C</b> and a <tool_ tag cut short", True),
    ("hermes", "", True),
    ("hermes", f"Let me check.\n<tool_call>\n{_call()}\n</tool_call>", True),
    ("hermes", "I wrote <tool_response>rain</tool_response> here", True),
    ("hermes", f"<tool_call>\n{_call(town='Paris', days=2)}\n</tool_call>", False),
    ("hermes", f"<tool_call>\n{_call(city='Paris', days='two')}\n</tool_call>", False),
    ("hermes", f"<tool_call>\n{_call(name='launch')}\n</tool_call>", False),
    ("hermes", "<tool_call>\nI will look it up", False),
    ("hermes", f"<tool_call>\n{_call()}\n</tool_call> and then some text", False),
    ("hermes", f"<tool_call>\n{_call()}", False),  # a call must be finished before the reply ends
    # llama3: the marker, or a reply that opens with "{", is a call with "parameters".
    ("llama3", _call("parameters"), True),
    ("llama3", f"  {_call('parameters')}; {_call('parameters', name='get_time')}", True),
    ("llama3", 'Sure. <|python_tag|>' + _call("parameters"), True),
    ("llama3", '{"answer": 42}', False),
    ("llama3", "The answer is {42}.", True),
    # mistral: [TOOL_CALLS] then a list of calls.
    ("mistral", f"[TOOL_CALLS][{_call()}, {_call(name='get_time')}]", True),
    ("mistral", "See [1] and [2].", True),
    ("mistral", f"[TOOL_CALLS][{_call(city=3, days=2)}]", False),
    # generic: a reply that opens with "{" is one call; anything else is text.
    ("generic", _call(), True),
    ("generic", "Hello {name}, { and } are braces.", True),
    ("generic", '{"x": 1}', False),
]


@pytest.mark.parametrize(("fmt", "text", "passes"), CASES)
def test_the_grammar_frees_text_and_forces_calls(hearth, fmt, text, passes):
    assert follows(hearth, text_or_call_grammar(TOOLS, CALL_SHAPES[fmt], parallel=True), text) is passes


def test_one_call_only_unless_parallel(hearth):
    two = f"<tool_call>\n{_call()}\n</tool_call>\n<tool_call>\n{_call(name='get_time')}\n</tool_call>"
    assert follows(hearth, text_or_call_grammar(TOOLS, CALL_SHAPES["hermes"], parallel=True), two)
    assert not follows(hearth, text_or_call_grammar(TOOLS, CALL_SHAPES["hermes"], parallel=False), two)


def test_the_grammar_applies_only_where_nothing_else_constrains_the_reply(hearth):
    ask = [{"role": "user", "content": "Hi"}]
    auto = check_tool_request([{"type": "function", "function": TOOLS[0]}], "auto", None, ask)
    params = GenerationParams(max_new_tokens=1, temperature=0)
    fmt = {"type": "json_object"}
    own = 'root ::= "Hello"'
    try:
        for kwargs, grammar in [({}, auto_grammar := plan_of(hearth, auto).text_or_call_grammar),
                                ({"response_format": fmt}, response_format_grammar(fmt)),
                                ({"params": dataclasses.replace(params, grammar=own)}, own)]:
            job = hearth.chat(ask, kwargs.pop("params", params), tools=auto, **kwargs)
            job.stop()  # what is checked is what was queued, not the reply
            assert job.params.grammar == grammar
        assert "free-text-0" in auto_grammar
        hearth.tool_grammar = "required-only"
        job = hearth.chat(ask, params, tools=auto)
        job.stop()
        assert job.params.grammar == ""
    finally:
        hearth.tool_grammar = "auto"


def plan_of(hearth, request):
    return plan_tools(request, template_source(hearth.models.current.model.chat_template))
