"""Which chat template a loaded model chats with when a chat asks for "the model's own".

A model that ships a template (GGUF metadata, chat_template.jinja, tokenizer_config.json)
uses it. One that ships none gets, in order:

1. the built-in template of its own family, recognised by the markers that family
   writes its turns with being tokens of its vocabulary (<|im_start|> and <|im_end|>
   for ChatML, <|eot_id|> for Llama 3, <start_of_turn> for Gemma, <|end|> for Phi-3,
   [INST] for Mistral v3): a marker that is not one token is text the model has never
   seen as a turn boundary, and it answers with markers of its own making. The
   architecture breaks a tie when a vocabulary holds several families' markers;
2. for the families that write their turns in plain text ([INST] in Llama 2 and
   Mistral v0.1/v0.2, Alpaca's ### headings), the model's name: a Mistral "instruct" or
   a Llama 2 "chat" file gets [INST], an "alpaca" one Alpaca;
3. else a plain "User:"/"Assistant:" transcript, whose stop strings keep a base
   model from writing the user's next line.

`choose_template` is the rule, on facts alone; `model_facts` reads those facts from a
loaded model: the llama.cpp loader sets `architecture` (general.architecture) and
`special_tokens` (its control and user-defined tokens), the Transformers and GPTQ
models set `architecture` (config.json's model_type) and `special_tokens` (the
tokenizer's added tokens). A model from any other loader tells neither, and only its
name can hint.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webui.chat.templates import BUILTIN_TEMPLATES, InstructionTemplate, own_template
from webui.runtime.model_manager import LoadedModel


@dataclass(frozen=True)
class ModelFacts:
    """What picks a template for a model that ships none."""
    architecture: str | None = None  # GGUF general.architecture, or config.json's model_type
    special_tokens: frozenset[str] | None = None  # texts of its special tokens; None: not known
    name: str = ""  # its file or folder name


NO_FACTS = ModelFacts()  # a model nothing is known about


@dataclass(frozen=True)
class TemplateChoice:
    template: InstructionTemplate
    reason: str  # one sentence: why this template, for the Model tab and the info route

    @property
    def name(self) -> str:
        return self.template.name


@dataclass(frozen=True)
class _Family:
    template: str  # a BUILTIN_TEMPLATES name
    tokens: tuple[str, ...]  # markers that must all be tokens of the vocabulary
    architectures: frozenset[str]  # GGUF architectures and config.json model_types


# In order of preference when a vocabulary holds the markers of several families and
# the architecture names none of them.
FAMILIES = (
    _Family("Llama-3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), frozenset({"llama"})),
    _Family("Gemma", ("<start_of_turn>", "<end_of_turn>"),
            frozenset({"gemma", "gemma2", "gemma3", "gemma3_text", "gemma3n"})),
    _Family("Phi-3", ("<|user|>", "<|assistant|>", "<|end|>"), frozenset({"phi3", "phimoe"})),
    _Family("Mistral", ("[INST]", "[/INST]"), frozenset({"llama", "mistral", "mixtral"})),
    _Family("ChatML", ("<|im_start|>", "<|im_end|>"),
            frozenset({"qwen", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "internlm2", "yi"})),
)

# Families whose markers are plain text, recognised by the model's name.
_MISTRAL_NAME = re.compile(r"(mistral|mixtral).*instruct|instruct.*(mistral|mixtral)|llama[-_ ]?2.*chat",
                           re.IGNORECASE)
_ALPACA_NAME = re.compile(r"alpaca", re.IGNORECASE)


def choose_template(model_template: str | None, facts: ModelFacts) -> TemplateChoice:
    """The template for a model whose own is `model_template` (None or empty: it ships
    none), and why."""
    if model_template:
        return TemplateChoice(own_template(model_template), "the model's own chat template")
    tokens = facts.special_tokens
    if tokens is not None:
        found = [f for f in FAMILIES if all(t in tokens for t in f.tokens)]
        if found:
            family = next((f for f in found if facts.architecture in f.architectures), found[0])
            return TemplateChoice(BUILTIN_TEMPLATES[family.template],
                                  f"the model ships no chat template; its vocabulary has {_listed(family.tokens)} "
                                  f"as tokens, the markers of {family.template}")
    if _MISTRAL_NAME.search(facts.name):
        return TemplateChoice(BUILTIN_TEMPLATES["Mistral"],
                              f"the model ships no chat template; its name ({facts.name}) says it is a Mistral "
                              "instruct or Llama 2 chat model, whose [INST] format is plain text")
    if _ALPACA_NAME.search(facts.name):
        return TemplateChoice(BUILTIN_TEMPLATES["Alpaca"],
                              f"the model ships no chat template; its name ({facts.name}) says it is "
                              "Alpaca-tuned")
    if tokens is None:
        why = "its loader does not say which special tokens its vocabulary has"
    else:
        why = "its vocabulary has the turn markers of none of " + ", ".join(f.template for f in FAMILIES)
    return TemplateChoice(BUILTIN_TEMPLATES["Plain"],
                          f"the model ships no chat template and {why}: a plain User:/Assistant: transcript")


def model_facts(model: Any, name: str = "") -> ModelFacts:
    """The facts a loaded model's loader gives (see the module docstring)."""
    architecture = getattr(model, "architecture", None)
    tokens = getattr(model, "special_tokens", None)
    return ModelFacts(architecture if isinstance(architecture, str) else None,
                      frozenset(tokens) if tokens is not None else None, name)


def template_of(loaded: LoadedModel) -> TemplateChoice:
    """The template a LoadedModel chats with when a chat asks for the model's own."""
    return choose_template(loaded.model.chat_template, model_facts(loaded.model, loaded.name))


def strip_markers(text: str, markers: Iterable[str]) -> str:
    """`text` without the template markers it ends with, whole or begun: the last
    defence, after the stop strings, for what a reply shows and saves. A reply cut by
    its token limit inside a marker ends with the marker's start, which the stop
    strings held back and released at the end as text."""
    markers = [m for m in markers if m.strip()]
    while True:
        before = text
        for m in markers:
            body = text.rstrip()
            if body.endswith(m):
                text = body[:-len(m)]
                break
            begun = next((k for k in range(len(m) - 1, 1, -1) if text.endswith(m[:k])), 0)
            if begun:
                text = text[:-begun]
                break
        if text == before:
            return text


def _listed(items: tuple[str, ...]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


__all__ = ["FAMILIES", "NO_FACTS", "ModelFacts", "TemplateChoice", "choose_template", "model_facts", "strip_markers",
           "template_of"]
