"""Instruction templates: every built-in renders its published format, ChatML agrees
with SmolLM2's own template, and hostile templates are stopped with a clear error."""
from __future__ import annotations

import pytest

from loaders.gguf import check_complete
from webui.chat.prompts import chat_prompt
from webui.chat.template_fallback import ModelFacts, choose_template
from webui.chat.templates import (
    BUILTIN_TEMPLATES,
    CUSTOM_TEMPLATE,
    MODEL_TEMPLATE,
    ChatTemplateError,
    render_chat_prompt,
    resolve_template,
    template_choices,
)

SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
CONVO = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
]
SMOL_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def smollm2_template(default_model) -> str:
    template = check_complete(default_model).chat_template
    assert template and "<|im_start|>" in template
    return template


def render(name, messages, **kw):
    return render_chat_prompt(BUILTIN_TEMPLATES[name].source, messages, **kw)


def test_the_choices_offer_the_models_own_every_builtin_and_custom():
    assert template_choices() == [MODEL_TEMPLATE, "ChatML", "Alpaca", "Llama-3", "Mistral", "Gemma",
                                  "Phi-3", "Plain", CUSTOM_TEMPLATE]


@pytest.mark.parametrize("messages", [[SYSTEM, *CONVO], [{"role": "system", "content": "Be brief."}, CONVO[0]]])
def test_chatml_agrees_with_smollm2s_own_template(smollm2_template, messages):
    for gen in (True, False):
        assert render("ChatML", messages, add_generation_prompt=gen) == \
            render_chat_prompt(smollm2_template, messages, add_generation_prompt=gen)


def test_without_a_system_message_smollm2_adds_its_own_and_chatml_matches_given_that(smollm2_template):
    theirs = render_chat_prompt(smollm2_template, CONVO)
    ours = render("ChatML", [{"role": "system", "content": SMOL_DEFAULT_SYSTEM}, *CONVO])
    assert theirs == ours


def _llama_cpp_format(name, messages):
    """llama-cpp-python's own formatter for the format: an independent reference."""
    from llama_cpp import llama_chat_format as f

    fn = {"ChatML": f.format_chatml, "Llama-3": f.format_llama3, "Gemma": f.format_gemma,
          "Mistral": f.format_mistral_instruct}[name]
    return fn(messages).prompt


@pytest.mark.parametrize("name,messages", [
    ("ChatML", [SYSTEM, *CONVO]),
    ("Llama-3", [SYSTEM, *CONVO]),
    ("Llama-3", CONVO),
    # Gemma and Mistral have no system role; on system-less chats all agree.
    ("Gemma", CONVO),
    ("Mistral", CONVO),
])
def test_builtins_agree_with_llama_cpp_pythons_formatters(name, messages):
    assert render(name, messages) == _llama_cpp_format(name, messages)


def test_llama3_exact_format_with_bos():
    out = render("Llama-3", [SYSTEM, CONVO[0]], bos_token="<|begin_of_text|>")
    assert out == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant"
                   "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_gemma_folds_the_system_prompt_into_the_first_user_turn():
    # As llama.cpp's reference output for google/gemma-7b-it (and Gemma 3's template).
    assert render("Gemma", [SYSTEM, *CONVO]) == (
        "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
        "<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n")


def test_mistral_folds_the_system_prompt_into_the_first_user_turn_only():
    assert render("Mistral", [SYSTEM, *CONVO]) == (
        "[INST] You are a helpful assistant\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]")


def test_alpaca_exact_format():
    assert render("Alpaca", CONVO) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nHello\n\n### Response:\nHi there\n\n"
        "### Instruction:\nWho are you\n\n### Response:\n")
    assert render("Alpaca", [{"role": "system", "content": "Be terse."}, CONVO[0]]) == \
        "Be terse.\n\n### Instruction:\nHello\n\n### Response:\n"


@pytest.mark.parametrize("name", list(BUILTIN_TEMPLATES))
def test_every_builtin_takes_a_greeting_first_and_names_its_stop(name):
    """A character's greeting opens a chat with an assistant turn: no refusal."""
    out = render(name, [{"role": "assistant", "content": "Welcome!"}, CONVO[0]])
    assert "Welcome!" in out and "Hello" in out
    assert BUILTIN_TEMPLATES[name].stop


def test_resolve_template():
    assert resolve_template("Gemma", "ignored").name == "Gemma"
    assert resolve_template(MODEL_TEMPLATE) is None  # the model's own: template_fallback.py says which
    assert resolve_template(CUSTOM_TEMPLATE, "{{ 'y' }}").source == "{{ 'y' }}"
    with pytest.raises(ChatTemplateError, match="custom instruction template is empty"):
        resolve_template(CUSTOM_TEMPLATE, "  ")


def test_a_model_without_a_template_gets_chatml_when_its_vocabulary_has_chatml_tokens():
    """The rest of the rule is tests/unit/chat/test_template_fallback.py."""
    chatml_vocabulary = ModelFacts("llama", frozenset({"<|im_start|>", "<|im_end|>"}))
    for missing in (None, ""):
        assert choose_template(missing, chatml_vocabulary).template is BUILTIN_TEMPLATES["ChatML"]
    # The API's raw chat falls back the same way.
    assert chat_prompt(None, CONVO, facts=chatml_vocabulary) == render("ChatML", CONVO)


ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ namespace.__init__ }}",
    "{{ raise_exception.__globals__ }}",
    "{{ messages.__class__ }}",
    "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
    "{{ messages[0].update({'content': 'x'}) }}",
    "{{ '{0.__class__}'.format('') }}",
    "{% set x = ''.__class__ %}{{ x }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_sandbox_stops_templates_that_reach_for_python_internals(template):
    with pytest.raises(ChatTemplateError, match="Python internals") as e:
        render_chat_prompt(template, CONVO)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("template,message", [
    ("{{ 'a' * 10000000 }}", "sequence of 10000000 items"),
    ("{{ 2 ** 100000 }}", "huge power"),
    ("{% for i in range(1000000) %}{% endfor %}", "MAX_RANGE"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}xxxxxxxxxx{% endfor %}{% endfor %}",
     "more than"),
])
def test_sandbox_bounds_memory_and_output(template, message):
    with pytest.raises(ChatTemplateError, match=message):
        render_chat_prompt(template, CONVO)


def test_template_errors_are_one_line():
    with pytest.raises(ChatTemplateError, match="syntax error"):
        render_chat_prompt("{% for %}", CONVO)
    with pytest.raises(ChatTemplateError, match="refused the conversation: roles must alternate"):
        render_chat_prompt("{{ raise_exception('roles must alternate') }}", CONVO)
    with pytest.raises(ChatTemplateError, match="failed"):
        render_chat_prompt("{{ messages[0]['content'] + 1 }}", CONVO)


def test_the_sandbox_does_not_mutate_the_callers_messages():
    messages = [dict(m) for m in CONVO]
    with pytest.raises(ChatTemplateError):
        render_chat_prompt("{{ messages.pop() }}", messages)
    assert messages == CONVO


def test_ordinary_template_features_still_work():
    # Real templates use namespace(), loops, filters, tojson and strftime_now.
    out = render_chat_prompt(
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}"
        "{{ ns.n }}|{{ messages[0]['content'] | upper }}|{{ messages | length }}|"
        "{{ {'a': 1} | tojson }}|{{ strftime_now('%Y') | length }}", CONVO)
    assert out == '3|HELLO|3|{"a": 1}|4'
