"""Rendering a template that is not a built-in is bounded in time and memory: it
runs in a render process that is killed at the limit or on Stop, while other renders
go on; a normal template renders exactly as it does in-process, and a chat turn
rendered ahead is not rendered again when the prompt is built.

The tokenizer is SmolLM2's own, loaded by llama.cpp with vocab_only (no weights)."""
from __future__ import annotations

import threading
import time

import psutil
import pytest

from loaders.gguf import check_complete
from webui.chat.context import TokenCounter
from webui.chat.prompts import ChatRequest, build_chat_prompt, prerender_chat_prompt
from webui.chat.render_pool import RENDER_POOL, RenderStopped
from webui.chat.render_worker import MEMORY_LIMIT_MB
from webui.chat.sandbox import render_in_sandbox
from webui.chat.templates import (
    BUILTIN_TEMPLATES,
    RENDER_LIMIT_S,
    ChatTemplateError,
    TemplateRenderer,
    render_chat_prompt,
)

MB = 1024 * 1024
CONVO = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
]
LONG_MESSAGE = [{"role": "user", "content": "word " * 20_000}]  # 100,000 characters

NESTED_RANGES = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
NESTED_OVER_MESSAGE = ("{% for a in messages[0]['content'] %}{% for b in messages[0]['content'] %}"
                       "{% endfor %}{% endfor %}")
DOUBLING = ("{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}"
            "{% endfor %}{{ ns.s | length }}")
HOSTILE = [
    pytest.param(NESTED_RANGES, "took longer than 2 s to render", id="nested-range-loops"),
    pytest.param(NESTED_OVER_MESSAGE, "took longer than 2 s to render", id="nested-loops-over-a-message"),
    pytest.param(DOUBLING, f"needed more than {MEMORY_LIMIT_MB} MB of memory", id="string-doubled-30-times"),
]
# Starting a render process takes ~0.2 s, more on a busy machine; it is not counted
# in the limit.
FEW_SECONDS = RENDER_LIMIT_S + 4


@pytest.fixture(scope="module")
def smollm2_template(default_model) -> str:
    return check_complete(default_model).chat_template


@pytest.fixture
def pool_calls(monkeypatch):
    """How many batches reach a render process (the real pool still renders them)."""
    calls = []
    real = RENDER_POOL.render

    def counting(batch, *args, **kwargs):
        calls.append(len(batch))
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(RENDER_POOL, "render", counting)
    return calls


def in_thread(fn):
    """Run fn in a thread; (thread, box) where box gets its result or exception."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.parametrize("template,message", HOSTILE)
def test_a_hostile_template_ends_in_one_line_within_a_few_seconds(template, message):
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match=message) as e:
        render_chat_prompt(template, LONG_MESSAGE)
    assert time.monotonic() - start < FEW_SECONDS
    assert "\n" not in str(e.value)
    assert render_chat_prompt("{{ messages[0]['content'] }}!", CONVO) == "Hello!"  # a fresh process


def test_a_template_that_eats_memory_does_so_in_its_own_bounded_process():
    hearth = psutil.Process()
    before = hearth.memory_info().rss
    peak, done = 0, threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            for pid in RENDER_POOL.pids():
                try:
                    peak = max(peak, psutil.Process(pid).memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with pytest.raises(ChatTemplateError, match="memory"):
            render_chat_prompt(DOUBLING, CONVO)
    finally:
        done.set()
        sampler.join()
    assert 48 * MB < peak < (MEMORY_LIMIT_MB + 64) * MB  # it grew, up to its limit and no further
    assert hearth.memory_info().rss - before < 50 * MB  # this process did not grow with it


def test_a_hostile_render_holds_up_no_other_render(smollm2_template):
    thread, box = in_thread(lambda: render_chat_prompt(NESTED_RANGES, CONVO))
    time.sleep(0.3)
    assert thread.is_alive()
    for _ in range(5):
        start = time.monotonic()
        assert render_chat_prompt(smollm2_template, CONVO) == render_in_sandbox(smollm2_template, CONVO)
        assert time.monotonic() - start < 1.0
    thread.join(FEW_SECONDS)
    assert not thread.is_alive() and isinstance(box.get("error"), ChatTemplateError)


def test_stop_ends_a_running_render_at_once():
    stop = threading.Event()
    renderer = TemplateRenderer(stopped=stop.is_set)
    thread, box = in_thread(lambda: renderer.render(NESTED_RANGES, CONVO))
    time.sleep(0.5)
    stopped_at = time.monotonic()
    stop.set()
    thread.join(FEW_SECONDS)
    assert time.monotonic() - stopped_at < 0.5
    assert isinstance(box.get("error"), RenderStopped)
    assert "stopped" in str(box["error"]) and "\n" not in str(box["error"])


def test_the_renders_of_one_prompt_share_one_limit():
    renderer = TemplateRenderer()
    with pytest.raises(ChatTemplateError, match="longer than 2 s"):
        renderer.render(NESTED_RANGES, CONVO)
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match="longer than 2 s"):  # no second budget
        renderer.render("{{ 'fine' }}", CONVO)
    assert time.monotonic() - start < 0.1


@pytest.mark.parametrize("gen", [True, False])
def test_a_normal_template_renders_exactly_as_in_process(smollm2_template, gen):
    for messages in (CONVO, [], [{"role": "user", "content": "ünïcødé \ud83d\ude00 \"quotes\"\n\\"}]):
        assert render_chat_prompt(smollm2_template, messages, add_generation_prompt=gen) == \
            render_in_sandbox(smollm2_template, messages, add_generation_prompt=gen)
    assert render_chat_prompt("{{ bos_token }}|{{ eos_token }}|{{ extra }}", CONVO, bos_token="<s>",
                              eos_token="</s>", extra=7) == "<s>|</s>|7"


def test_a_templates_own_errors_come_back_as_they_are():
    with pytest.raises(ChatTemplateError, match="refused the conversation: roles must alternate"):
        render_chat_prompt("{{ raise_exception('roles must alternate') }}", CONVO)
    with pytest.raises(ChatTemplateError, match="Python internals"):
        render_chat_prompt("{{ ''.__class__.__mro__ }}", CONVO)


def test_builtin_templates_render_in_this_process(pool_calls):
    for template in BUILTIN_TEMPLATES.values():
        render_chat_prompt(template.source, CONVO)
        TemplateRenderer().render(template.source, CONVO)
    assert pool_calls == []


def test_a_turn_rendered_ahead_is_not_rendered_again(smollm2_template, tokenizer, pool_calls):
    request = ChatRequest(CONVO, mode="instruct", system_prompt="Be brief.")
    renderer = TemplateRenderer()
    prerender_chat_prompt(request, smollm2_template, renderer)
    assert pool_calls == [6]  # probes, the fixed part, the whole history: one round trip
    built = build_chat_prompt(request, TokenCounter(tokenizer), smollm2_template, 512, 64, renderer)
    assert pool_calls == [6]
    assert built.first_kept == 0
    assert built.text == build_chat_prompt(request, TokenCounter(tokenizer), smollm2_template, 512, 64).text


def test_a_turn_that_must_drop_turns_renders_within_what_is_left(smollm2_template, tokenizer, pool_calls):
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 60}
               for i in range(15)]
    request = ChatRequest(history, mode="instruct")
    renderer = TemplateRenderer()
    prerender_chat_prompt(request, smollm2_template, renderer)
    built = build_chat_prompt(request, TokenCounter(tokenizer), smollm2_template, 512, 64, renderer)
    assert built.first_kept > 0 and len(pool_calls) > 1
    assert 0 < renderer.spent_s < 0.5


def test_a_template_error_found_ahead_is_raised_without_rendering_again(tokenizer, pool_calls):
    request = ChatRequest(CONVO, mode="instruct")
    renderer = TemplateRenderer()
    prerender_chat_prompt(request, NESTED_RANGES, renderer)
    assert pool_calls == [6]
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match="longer than 2 s"):
        build_chat_prompt(request, TokenCounter(tokenizer), NESTED_RANGES, 512, 64, renderer)
    assert time.monotonic() - start < 0.1 and pool_calls == [6]
