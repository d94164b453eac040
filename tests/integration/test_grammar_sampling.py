"""Grammar-constrained sampling checks only the sampled token against the grammar
(loaders/grammar_sampler.py) and gives the same greedy reply as the grammar inside
llama.cpp's sampler chain, on the real SmolLM2 GGUF."""
import json
import threading

import llama_cpp
from llama_cpp._internals import LlamaSampler

from loaders.grammar_sampler import GrammarCheckedSampler
from loaders.llamacpp import sampler_chain
from loaders.params import GenerationParams
from webui.chat.prompts import chat_prompt
from webui.chat.structured import schema_grammar

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "pets": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "age", "pets"], "additionalProperties": False}
ASK = [{"role": "user", "content": "Describe a person as JSON with their name, age and pets."}]


def grammar_in_chain_reply(llm, ids: list[int], params: GenerationParams) -> list[int]:
    """The reference: llama.cpp's grammar sampler inside Hearth's chain (filtering every
    candidate before the greedy pick), driven token by token with raw llama-cpp-python
    calls, evaluating the prompt as LlamaCppModel does (all but its last token in one
    batch, the last alone)."""
    chain = LlamaSampler()
    for method, args in sampler_chain(params, llm.n_ctx(), llm.n_vocab()):
        if method == "grammar":
            llama_cpp.llama_sampler_chain_add(chain.sampler, llama_cpp.llama_sampler_init_grammar(
                llm._model.vocab, args[0].encode(), b"root"))
        else:
            getattr(chain, method)(*args)
    llm.reset()
    llm.eval(ids[:-1])
    llm.eval(ids[-1:])
    out: list[int] = []
    try:
        while len(out) < params.max_new_tokens:
            token = chain.sample(llm._ctx, -1)
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                break
            out.append(token)
            llm.eval([token])
    finally:
        chain.close()
    return out


def test_greedy_json_schema_reply_is_the_grammar_in_chain_reply_and_rarely_resamples(hearth):
    model = hearth.models.current.model
    llm = model._llm
    grammar = schema_grammar(SCHEMA)
    ids = model.encode(chat_prompt(model.chat_template, ASK))
    params = GenerationParams(temperature=0.0, seed=1, max_new_tokens=60, grammar=grammar)
    with hearth.models.use():
        reference = model.decode(grammar_in_chain_reply(llm, ids, params))
        ours = "".join(model.generate(ids, params, threading.Event()))
        sampler = llm._sampler
    assert ours == reference
    assert ours.startswith("{") and (not ours.endswith("}") or set(json.loads(ours)) == set(SCHEMA["properties"]))
    # The speed: most tokens pass the one-candidate check; the full-vocabulary grammar
    # pass runs only where the free pick breaks the schema.
    assert isinstance(sampler, GrammarCheckedSampler)
    assert 0 < sampler.sampled and sampler.resampled < sampler.sampled / 2
