"""The thinking/answer splitter on recorded replies of real reasoning models, fed
whole, a character at a time and in random pieces: the split must not depend on
where the token boundaries fall."""
import random

import pytest

from webui.chat.prompts import chat_prompt
from webui.chat.reasoning import (
    ReasoningFormat,
    ReasoningSplitter,
    markers_for,
    split_reasoning,
    supports_thinking_switch,
)

# Qwen3-0.6B (enable_thinking on): the template's generation prompt opens nothing.
QWEN3 = "<think>\nOkay, the user says hi. I should greet back.\n</think>\n\nHello! How can I help you today?"
# DeepSeek-R1-Distill-Qwen-1.5B: its template ends the prompt with "<think>\n".
R1 = "Okay, 2 + 2. That is 4.\n</think>\n\nThe answer is **4**."
# Qwen3 with enable_thinking=false: the template writes an empty think block itself.
PLAIN = "Hello! How can I help?"
MAGISTRAL = "[THINK]Count the letters: r, r, r.[/THINK]There are 3 r's."


def pieces(text, how):
    if how == "whole":
        return [text]
    if how == "chars":
        return list(text)
    rng = random.Random(7)
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 5)
        out.append(text[i:i + n])
        i += n
    return out


def run(splitter, parts):
    reasoning, content = "", ""
    for p in parts:
        r, c = splitter.feed(p)
        reasoning, content = reasoning + r, content + c
    r, c = splitter.finish()
    return reasoning + r, content + c


@pytest.mark.parametrize("how", ["whole", "chars", "random"])
def test_recorded_replies_split_the_same_however_they_are_cut(how):
    assert run(ReasoningSplitter(), pieces(QWEN3, how)) == (
        "Okay, the user says hi. I should greet back.", "Hello! How can I help you today?")
    assert run(ReasoningSplitter(starts_inside=True), pieces(R1, how)) == (
        "Okay, 2 + 2. That is 4.", "The answer is **4**.")
    assert run(ReasoningSplitter(), pieces(PLAIN, how)) == ("", PLAIN)
    assert run(ReasoningSplitter("[THINK]", "[/THINK]"), pieces(MAGISTRAL, how)) == (
        "Count the letters: r, r, r.", "There are 3 r's.")


def test_a_marker_split_across_pieces_is_held_back_until_it_is_known():
    s = ReasoningSplitter()
    assert s.feed("<th") == ("", "")
    assert s.feed("ink>plan") == ("plan", "")
    assert s.feed(" more</thi") == (" more", "")
    assert s.feed("nk>Answer") == ("", "Answer")


def test_text_that_only_looks_like_the_marker_is_content():
    assert split_reasoning("<thanks> to you") == ("", "<thanks> to you")
    assert split_reasoning("Use <think> tags like this") == ("", "Use <think> tags like this")
    assert split_reasoning("<") == ("", "<")


def test_unterminated_thinking_is_all_reasoning():
    assert split_reasoning("<think>still going and then max_tokens") == ("still going and then max_tokens", "")
    assert split_reasoning("half a thought</thi", ReasoningFormat(starts_inside=True)) == ("half a thought</thi", "")


def test_markers_come_from_the_template():
    qwen3 = "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    assert markers_for(qwen3) == ("<think>", "</think>")
    assert markers_for("... '[THINK]' + thinking + '[/THINK]' ...") == ("[THINK]", "[/THINK]")
    assert markers_for("{{ '<seed:think>' }}...{{ '</seed:think>' }}") == ("<seed:think>", "</seed:think>")
    assert markers_for(None) == ("<think>", "</think>")
    assert supports_thinking_switch(qwen3) and not supports_thinking_switch("{{ messages }}")


def test_a_prompt_that_opens_the_thinking_starts_the_reply_inside_it():
    r1_prompt = "<｜User｜>2+2?<｜Assistant｜><think>\n"
    assert ReasoningFormat.for_prompt("... </think> ...", r1_prompt).starts_inside
    assert not ReasoningFormat.for_prompt("... </think> ...", "<|im_start|>assistant\n").starts_inside
    # Qwen3 with thinking switched off: the prompt closes the block, so the reply is all answer.
    assert not ReasoningFormat.for_prompt("</think>", "<|im_start|>assistant\n<think>\n\n</think>\n\n").starts_inside


# The parts of Qwen3's template that read enable_thinking and earlier thinking.
QWEN3_TEMPLATE = (
    "{%- for message in messages %}{{ '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.role == 'assistant' and message.reasoning_content %}"
    "{{ '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}{%- endif %}"
    "{{ message.content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}")


def test_the_thinking_switch_and_earlier_thinking_reach_the_template():
    convo = [{"role": "user", "content": "hi"},
             {"role": "assistant", "content": "Hello", "reasoning_content": "greet"},
             {"role": "user", "content": "again"}]
    on = chat_prompt(QWEN3_TEMPLATE, convo)
    off = chat_prompt(QWEN3_TEMPLATE, convo, enable_thinking=False)
    assert "<think>\ngreet\n</think>" in on
    assert on.endswith("<|im_start|>assistant\n") and off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not ReasoningFormat.for_prompt(QWEN3_TEMPLATE, off).starts_inside
