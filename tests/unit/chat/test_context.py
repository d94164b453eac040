"""Fitting a history into the context: oldest turns go, the system prompt and the
character stay, and a turn's cost does not grow with the history (each message is
tokenized once, and only the messages that fit are looked at).

The tokenizer is SmolLM2's own, loaded by llama.cpp with vocab_only (no weights)."""
from __future__ import annotations

import pytest

from webui.characters.character import Character
from webui.chat.context import ContextOverflow, TokenCounter, TokenCounters, fit_history, reply_reserve
from webui.chat.prompts import ChatRequest, build_chat_prompt
from webui.chat.template_fallback import ModelFacts
from webui.chat.templates import BUILTIN_TEMPLATES

CTX = 512
RESERVE = 64


@pytest.fixture
def counter(tokenizer):
    return TokenCounter(tokenizer)


CHARACTER = Character(name="Ember", greeting="Hello {{user}}!", context="Ember is a hearth spirit.",
                      example_dialogue="<START>\n{{user}}: hi\n{{char}}: *crackles* hello")


def history(n: int, words: int = 12) -> list[dict]:
    out = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        out.append({"role": role, "content": f"message {i} " + " ".join(f"word{i % 7}" for _ in range(words))})
    return out


def test_fit_history_keeps_the_newest_that_fit():
    costs = [10] * 10
    w = fit_history(10, costs.__getitem__, 35)
    assert (w.start, w.tokens) == (7, 30)
    assert fit_history(10, costs.__getitem__, 1000).start == 0


def test_fit_history_opens_on_a_whole_turn():
    roles = ["user", "assistant"] * 5
    w = fit_history(10, lambda i: 10, 45, lambda i: roles[i] == "user")
    assert w.start == 6 and roles[w.start] == "user"  # 5 would fit, but it is a reply


def test_fit_history_refuses_when_even_the_newest_cannot_fit():
    with pytest.raises(ContextOverflow, match="newest message needs about 50 tokens"):
        fit_history(3, lambda i: 50, 20)


def test_token_counter_tokenizes_each_text_once(counter, tokenizer):
    assert counter.count("hello world") == len(tokenizer("hello world")) - len(tokenizer(""))
    counter.count("hello world")
    counter.count("hello world")
    assert counter.tokenized == 1


def test_token_counters_start_fresh_for_a_new_model(tokenizer):
    counters = TokenCounters()
    a, b = object(), object()
    first = counters.for_model(a, tokenizer)
    assert counters.for_model(a, tokenizer) is first
    assert counters.for_model(b, tokenizer) is not first


def test_reply_reserve_is_at_most_half_the_context():
    assert reply_reserve(2048, 512) == 512
    assert reply_reserve(2048, 4096) == 1024


@pytest.mark.parametrize("mode", ["instruct", "chat-instruct", "chat"])
def test_a_long_history_is_cut_to_fit_and_keeps_system_prompt_and_character(counter, mode):
    msgs = history(400)
    request = ChatRequest(msgs, mode=mode, character=CHARACTER, system_prompt="SYSTEM-RULES",
                          template=BUILTIN_TEMPLATES["ChatML"] if mode != "chat" else None)
    prompt = build_chat_prompt(request, counter, None, CTX, RESERVE)
    assert len(prompt.ids) <= CTX - RESERVE
    assert prompt.dropped > 300
    assert msgs[prompt.first_kept]["role"] == "user"  # opens on a whole turn
    assert "SYSTEM-RULES" in prompt.text
    assert msgs[-1]["content"] in prompt.text
    assert msgs[0]["content"] not in prompt.text
    if mode != "instruct":
        assert "Ember is a hearth spirit." in prompt.text
        assert "*crackles* hello" in prompt.text  # example dialogue stays too
    # The window is nearly full: truncation drops what it must, not more.
    assert len(prompt.ids) > (CTX - RESERVE) * 0.75


def test_a_short_history_is_kept_whole(counter):
    msgs = history(6)
    prompt = build_chat_prompt(ChatRequest(msgs), counter, None, CTX, RESERVE)
    assert prompt.dropped == 0
    assert all(m["content"] in prompt.text for m in msgs)


@pytest.mark.parametrize("length", [1_000, 10_000])
def test_a_turn_tokenizes_only_what_fits_however_long_the_history(counter, length):
    msgs = history(length)
    request = ChatRequest(msgs, template=BUILTIN_TEMPLATES["ChatML"])
    build_chat_prompt(request, counter, None, CTX, RESERVE)
    first_turn = counter.tokenized
    # The same for 1,000 and 10,000 messages: bounded by the context, not the history.
    assert first_turn < 60, first_turn
    msgs += [{"role": "assistant", "content": "a new reply"}, {"role": "user", "content": "a new question"}]
    before = counter.tokenized
    build_chat_prompt(request, counter, None, CTX, RESERVE)
    # Next turn: only the two new messages are tokenized (and the fixed part, cached).
    assert counter.tokenized - before == 2


def test_editing_an_old_message_re_tokenizes_only_that_message(counter):
    msgs = history(20)
    request = ChatRequest(msgs, template=BUILTIN_TEMPLATES["ChatML"])
    build_chat_prompt(request, counter, None, 4096, RESERVE)
    before = counter.tokenized
    msgs[-3] = {"role": msgs[-3]["role"], "content": "edited text"}
    build_chat_prompt(request, counter, None, 4096, RESERVE)
    assert counter.tokenized - before == 1


def test_overflow_when_the_character_leaves_no_room(counter):
    huge = Character(name="Big", context="lore " * 2000)
    request = ChatRequest([{"role": "user", "content": "hi"}], mode="chat-instruct", character=huge,
                          template=BUILTIN_TEMPLATES["ChatML"])
    with pytest.raises(ContextOverflow, match="tokens"):
        build_chat_prompt(request, counter, None, CTX, RESERVE)


def test_a_prompt_that_leaves_no_room_for_the_reply_is_told_like_any_overflow(counter, monkeypatch):
    """The real prompt is checked once more after fitting by estimates; it is refused in
    the words of loaders.context_limit, which core and every backend use too."""
    monkeypatch.setattr(counter, "count", lambda text: 1)  # estimates far too short
    request = ChatRequest([{"role": "user", "content": "word " * 300}], template=BUILTIN_TEMPLATES["ChatML"])
    with pytest.raises(ContextOverflow, match=r"^the prompt is \d+ tokens but the context holds 256 with 64 kept "
                                              r"for the reply; shorten it"):
        build_chat_prompt(request, counter, None, 256, RESERVE)


def test_without_a_model_template_instruct_uses_chatml_and_its_stop_strings(counter):
    chatml_vocabulary = ModelFacts("llama", frozenset({"<|im_start|>", "<|im_end|>"}))
    prompt = build_chat_prompt(ChatRequest([{"role": "user", "content": "Hi"}]), counter, None, CTX, RESERVE,
                               facts=chatml_vocabulary)
    assert prompt.text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert prompt.stop == BUILTIN_TEMPLATES["ChatML"].stop


def test_chat_mode_is_a_transcript_ending_with_the_characters_name(counter):
    msgs = [{"role": "assistant", "content": "Hello You!"}, {"role": "user", "content": "Hi Ember"}]
    prompt = build_chat_prompt(ChatRequest(msgs, mode="chat", character=CHARACTER), counter, None, CTX, RESERVE)
    assert prompt.text.endswith("Ember: Hello You!\nYou: Hi Ember\nEmber:")
    assert "You: hi\nEmber: *crackles* hello" in prompt.text  # example dialogue, names filled in
    assert "<START>" not in prompt.text
    assert prompt.stop == ("\nYou:", "\nEmber:")


def test_chat_instruct_puts_the_character_in_the_system_turn(counter):
    msgs = [{"role": "assistant", "content": "Hello You!"}, {"role": "user", "content": "Hi"}]
    request = ChatRequest(msgs, mode="chat-instruct", character=CHARACTER, template=BUILTIN_TEMPLATES["ChatML"])
    prompt = build_chat_prompt(request, counter, None, CTX, RESERVE)
    assert prompt.text.startswith("<|im_start|>system\nEmber is a hearth spirit.")
    assert prompt.text.endswith("<|im_start|>assistant\nHello You!<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                "<|im_start|>assistant\n")
    assert prompt.stop == BUILTIN_TEMPLATES["ChatML"].stop


def test_instruct_with_the_models_own_template(counter):
    own = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    msgs = [{"role": "user", "content": "Hi"}]
    prompt = build_chat_prompt(ChatRequest(msgs, system_prompt="Be kind."), counter, own, CTX, RESERVE)
    assert prompt.text == "[system]Be kind.[user]Hi[assistant]"
    assert prompt.stop == ()  # no marker Hearth knows: the model's own end-of-turn token ends the reply


@pytest.mark.parametrize("mode", ["instruct", "chat"])
def test_continue_leaves_the_last_reply_open(counter, mode):
    msgs = [{"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": "Once upon a time "}]
    request = ChatRequest(msgs, mode=mode, character=CHARACTER, template=BUILTIN_TEMPLATES["ChatML"],
                          continue_last=True)
    prompt = build_chat_prompt(request, counter, None, CTX, RESERVE)
    assert prompt.text.endswith("Once upon a time")


def test_a_request_checks_its_mode_and_character():
    with pytest.raises(ValueError, match="unknown chat mode"):
        ChatRequest([], mode="roleplay")
    with pytest.raises(ValueError, match="needs a character"):
        ChatRequest([], mode="chat")
    with pytest.raises(ValueError, match="no reply to continue"):
        ChatRequest([{"role": "user", "content": "x"}], continue_last=True)
