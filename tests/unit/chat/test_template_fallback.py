"""The template a model chats with when it ships none: its family's built-in when the
family's markers are tokens of its vocabulary (the architecture breaking ties), the
[INST] or Alpaca format when its name says so, else a plain transcript; what the
loaders read for it from a GGUF header; and the last defence against markers in a
reply."""
from __future__ import annotations

import struct

import pytest

from loaders import gguf
from loaders.gguf import GGUFTruncated, read_special_tokens
from webui.chat.prompts import chat_prompt
from webui.chat.template_fallback import (
    FAMILIES,
    NO_FACTS,
    ModelFacts,
    choose_template,
    model_facts,
    strip_markers,
)
from webui.chat.templates import BUILTIN_TEMPLATES, MODEL_TEMPLATE, own_template, render_chat_prompt

CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
         {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "Who are you"}]
ALWAYS_THERE = frozenset({"<s>", "</s>", "<unk>", "<|endoftext|>"})


def vocab(*tokens: str) -> frozenset[str]:
    return ALWAYS_THERE | frozenset(tokens)


# Each family as its real vocabularies hold it, with the architecture of its GGUF files.
@pytest.mark.parametrize("template,architecture,tokens", [
    ("ChatML", "qwen2", ("<|im_start|>", "<|im_end|>")),
    ("ChatML", "llama", ("<|im_start|>", "<|im_end|>")),  # SmolLM2: a llama whose vocabulary is ChatML's
    ("Llama-3", "llama", ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    ("Mistral", "llama", ("[INST]", "[/INST]", "[TOOL_CALLS]")),  # Mistral v3 tokenizers
    ("Gemma", "gemma2", ("<start_of_turn>", "<end_of_turn>", "<bos>")),
    ("Phi-3", "phi3", ("<|user|>", "<|assistant|>", "<|end|>", "<|system|>")),
])
def test_a_family_is_recognised_by_its_markers_being_tokens(template, architecture, tokens):
    choice = choose_template(None, ModelFacts(architecture, vocab(*tokens), "model.gguf"))
    assert choice.template is BUILTIN_TEMPLATES[template]
    family = next(f for f in FAMILIES if f.template == template)
    assert all(t in choice.reason for t in family.tokens)
    assert "as tokens" in choice.reason and "ships no chat template" in choice.reason


def test_chatml_only_when_its_markers_are_tokens():
    """The failure seen: a base model without ChatML tokens chatted through ChatML and
    answered with raw <|im_end|> text. A qwen2 architecture alone does not make ChatML."""
    choice = choose_template(None, ModelFacts("qwen2", vocab(), "base.gguf"))
    assert choice.name == "Plain"
    assert "none of" in choice.reason and "plain User:/Assistant: transcript" in choice.reason
    half = choose_template(None, ModelFacts("qwen2", vocab("<|im_start|>"), "base.gguf"))
    assert half.name == "Plain"  # both markers, or it is not ChatML


def test_the_architecture_breaks_a_tie_between_families():
    both = vocab("<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
    assert choose_template(None, ModelFacts("qwen2", both)).name == "ChatML"
    assert choose_template(None, ModelFacts("llama", both)).name == "Llama-3"
    assert choose_template(None, ModelFacts("mamba", both)).name == FAMILIES[0].template  # the table's order


@pytest.mark.parametrize("name,template", [
    ("mistral-7b-instruct-v0.1.Q4_K_M.gguf", "Mistral"),
    ("Mixtral-8x7B-Instruct-v0.1.Q5_0.gguf", "Mistral"),
    ("llama-2-13b-chat.Q4_0.gguf", "Mistral"),
    ("alpaca-7b-native.Q4_0.gguf", "Alpaca"),
    ("llama-2-13b.Q4_0.gguf", "Plain"),  # the base model
    ("mistral-7b-v0.1.Q4_0.gguf", "Plain"),
])
def test_plain_text_formats_are_recognised_by_the_name(name, template):
    """[INST] in Llama 2 and Mistral v0.1/v0.2 is text, not a token: their name tells."""
    choice = choose_template(None, ModelFacts("llama", vocab(), name))
    assert choice.name == template
    if template != "Plain":
        assert name in choice.reason


def test_a_vocabulary_the_loader_does_not_tell_gets_the_plain_transcript():
    choice = choose_template(None, NO_FACTS)
    assert choice.name == "Plain" and "does not say" in choice.reason
    assert chat_prompt(None, CONVO[1:2]) == "User: Hello\nAssistant:"


def test_the_models_own_template_wins_and_its_markers_are_stop_strings():
    smollm = ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}"
              "{% endfor %}")
    choice = choose_template(smollm, ModelFacts("llama", vocab("<|eot_id|>")))
    assert choice.name == MODEL_TEMPLATE and choice.reason == "the model's own chat template"
    assert choice.template.source == smollm
    assert set(choice.template.stop) == {"<|im_end|>", "<|im_start|>"}
    assert own_template("{{ messages[0]['content'] }}").stop == ()  # no marker Hearth knows: its EOS ends it
    assert set(own_template("[INST] {{ x }} [/INST]{{ y }}</s>").stop) == {"[INST]", "</s>"}


def test_the_plain_transcript_and_its_stop_strings():
    plain = BUILTIN_TEMPLATES["Plain"]
    assert render_chat_prompt(plain.source, CONVO) == \
        "Be brief.\n\nUser: Hello\nAssistant: Hi there\nUser: Who are you\nAssistant:"
    assert "\nUser:" in plain.stop  # a base model does not write the user's turn


# Microsoft's template for Phi-3.5-mini-instruct (tokenizer_config.json).
PHI35 = ("{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
         "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
         "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
         "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")


def test_phi3_agrees_with_microsofts_template():
    assert render_chat_prompt(BUILTIN_TEMPLATES["Phi-3"].source, CONVO) == render_chat_prompt(PHI35, CONVO)


def test_model_facts_come_from_what_the_loader_sets():
    class Told:
        architecture = "gemma3"
        special_tokens = ["<start_of_turn>", "<end_of_turn>"]

    class Silent:
        pass

    told = model_facts(Told(), "gemma.gguf")
    assert told == ModelFacts("gemma3", frozenset(Told.special_tokens), "gemma.gguf")
    assert model_facts(Silent(), "x") == ModelFacts(None, None, "x")


@pytest.mark.parametrize("text,clean", [
    ("Dog.<|im_end|>", "Dog."),
    ("Dog.<|im_end|>\n<|im_start|>", "Dog."),
    ("Dog.\n<|im_", "Dog.\n"),  # cut by the token limit inside a marker
    ("Dog.\nUser", "Dog."),
    ("Dog.\nUser:", "Dog."),
    ("We met Us", "We met Us"),  # not after a newline: not the start of "\nUser:"
    ("a < b", "a < b"),  # one character is no marker's start
    ("Dog.", "Dog."),
])
def test_strip_markers_takes_whole_and_begun_markers_off_the_end(text, clean):
    assert strip_markers(text, ["<|im_end|>", "<|im_start|>", "\nUser:", "\nAssistant:"]) == clean


# --- what the llama.cpp loader reads: the vocabulary's special tokens ------------------

def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _gguf(tokens: list[str], types: list[int] | None, count: int | None = None) -> bytes:
    kv = [_string("general.architecture") + struct.pack("<I", 8) + _string("llama")]
    kv.append(_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(tokens) if count is None else count)
              + b"".join(_string(t) for t in tokens))
    if types is not None:
        kv.append(_string("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 5, len(types))
                  + struct.pack(f"<{len(types)}i", *types))
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv)


def test_read_special_tokens_keeps_control_and_user_defined_tokens(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf(["<s>", "hello", "<|im_start|>", "[INST]", "Ġworld"], [3, 1, 4, 3, 1]))
    assert read_special_tokens(path) == {"<s>", "<|im_start|>", "[INST]"}
    path.write_bytes(_gguf(["<s>", "hello"], None))  # no token types: every token's text
    assert read_special_tokens(path) == {"<s>", "hello"}


def test_read_special_tokens_is_bounded(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf(["a", "b"], None, count=3))  # claims one token more than there is
    with pytest.raises(GGUFTruncated):
        read_special_tokens(path)
    monkeypatch.setattr(gguf, "MAX_VOCAB", 2)
    path.write_bytes(_gguf(["<a>", "<b>", "<c>"], [3, 3, 3]))  # more tokens than any vocabulary has
    assert read_special_tokens(path) == frozenset()  # skipped, not decoded


def test_the_built_in_models_vocabulary_has_chatml_tokens(default_model):
    tokens = read_special_tokens(default_model)
    assert {"<|im_start|>", "<|im_end|>", "<|endoftext|>"} <= tokens
    assert len(tokens) == 17  # its control tokens, not its 49,152 pieces
