"""The spine on the real SmolLM2 GGUF through real llama.cpp."""
import gc
import json
import subprocess
import sys
import threading
import weakref

import pytest

import loaders
from loaders.fields import build
from loaders.params import GenerationParams
from tests.support import ROOT
from webui.runtime.generation import Delta, Finished

QUESTION = [{"role": "user", "content": "Write a haiku about autumn."}]


def test_seeded_greedy_reply_is_non_empty_and_repeatable(hearth, greedy):
    first, stats = hearth.chat(QUESTION, greedy).result()
    second, _ = hearth.chat(QUESTION, greedy).result()  # the second reuses the KV cache
    assert first.strip() and first == second
    assert stats.completion_tokens > 5 and stats.generation_tokens_per_second > 0


def test_same_prompt_and_reply_as_raw_llama_cpp(hearth, greedy, default_model):
    """The prompt must be exactly what llama-cpp-python's own chat formatter builds
    from the GGUF template. The replies must agree at least at the start: further on,
    a greedy near-tie may go either way, because raw llama.cpp evaluates the prompt
    in one batch and Hearth evaluates its last token alone (see LlamaCppModel._prefill)."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from webui.chat.prompts import chat_prompt

    template = hearth.models.current.model.chat_template
    raw_prompt = Jinja2ChatFormatter(template, eos_token="", bos_token="")(messages=QUESTION).prompt
    assert chat_prompt(template, QUESTION) == raw_prompt

    ours, _ = hearth.chat(QUESTION, greedy).result()
    raw = llama_cpp.Llama(str(default_model), n_ctx=2048, verbose=False)
    theirs = raw.create_chat_completion(QUESTION, temperature=0.0, max_tokens=greedy.max_new_tokens)
    raw.close()
    assert ours[:40] == theirs["choices"][0]["message"]["content"][:40]


def test_seeded_sampling_is_repeatable_and_seeds_matter(hearth):
    def run(seed):
        p = GenerationParams(temperature=1.0, seed=seed, max_new_tokens=30)
        return hearth.chat(QUESTION, p).result()[0]
    assert run(7) == run(7)
    assert len({run(7), run(8), run(9)}) > 1


def test_stop_strings_cut_the_text(hearth, greedy):
    full, _ = hearth.chat(QUESTION, greedy).result()
    words = full.split()
    stop = words[3]  # a word from the middle of the real reply
    cut, stats = hearth.chat(QUESTION, GenerationParams(temperature=0, max_new_tokens=40, stop=(stop,))).result()
    assert cut == full[: full.index(stop)]
    assert stats.finish_reason == "stop"


def test_max_new_tokens_ends_with_length(hearth):
    text, stats = hearth.complete("Once upon a time", GenerationParams(temperature=0, max_new_tokens=7,
                                                                        ignore_eos=True)).result()
    assert stats.completion_tokens == 7 and stats.finish_reason == "length"


def test_cancel_stops_within_one_token(hearth):
    loaded = hearth.models.current
    model = loaded.model
    ids = model.encode("Tell me a long story about the sea.")
    cancel = threading.Event()
    pieces = 0
    with hearth.models.use():
        stream = model.generate(ids, GenerationParams(temperature=0, max_new_tokens=300, ignore_eos=True), cancel)
        for _ in stream:
            pieces += 1
            if pieces == 5:
                cancel.set()
        stream.close()
    assert pieces == 5  # not one more token after the cancel


def test_stop_through_the_queue_reports_cancelled(hearth):
    job = hearth.complete("Tell me a long story about the sea.",
                          GenerationParams(temperature=0, max_new_tokens=400, ignore_eos=True))
    for event in job.events():
        if isinstance(event, Delta):
            job.stop()
        elif isinstance(event, Finished):
            assert event.stats.finish_reason == "cancelled"
            assert event.stats.completion_tokens < 50


def test_one_jobs_stop_does_not_stop_another(hearth):
    p = GenerationParams(temperature=0, max_new_tokens=20, ignore_eos=True)
    a = hearth.complete("The sea is", p)
    b = hearth.complete("The sky is", p)
    a.stop()
    _, stats_b = b.result()
    assert stats_b.finish_reason == "length" and stats_b.completion_tokens == 20


def test_second_chat_turn_evaluates_only_the_new_tokens(hearth, greedy):
    convo = [{"role": "user", "content": "Name a colour."}]
    reply, first = hearth.chat(convo, greedy).result()
    assert first.prompt_eval_tokens == first.prompt_tokens or first.prompt_eval_tokens > 0
    convo += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And another one?"}]
    _, second = hearth.chat(convo, greedy).result()
    new_tokens = second.prompt_tokens - first.prompt_tokens - first.completion_tokens
    # Only the new user turn (plus the template's few glue tokens) is read again.
    assert second.prompt_eval_tokens <= new_tokens + 4, (second, first)
    assert second.prompt_eval_tokens < second.prompt_tokens / 2


def test_prompt_cache_restores_an_earlier_conversation(default_model):
    from webui.hearth import Hearth

    core = Hearth()
    try:
        core.load_model(str(default_model), "llama.cpp", {"n_ctx": 1024, "prompt_cache": "ram"})
        p = GenerationParams(temperature=0, max_new_tokens=8)
        story = "Here is a long text about gardens. " * 20
        core.complete(story + "Summary:", p).result()
        core.complete("Something else entirely.", p).result()
        _, stats = core.complete(story + "Summary:", p).result()
        assert stats.prompt_eval_tokens <= 2, stats  # restored from the cache, not re-read
    finally:
        core.unload_model()
        core.engine.close()


def test_unload_frees_the_model(default_model):
    from webui.hearth import Hearth

    core = Hearth()
    loaded = core.load_model(str(default_model))
    llm_ref = weakref.ref(loaded.model._llm)
    del loaded
    core.unload_model()
    gc.collect()
    assert core.models.current is None and llm_ref() is None
    job = core.complete("hi", GenerationParams(max_new_tokens=2))
    with pytest.raises(Exception, match="no model is loaded"):
        job.result()
    core.engine.close()


RSS_SCRIPT = r"""
import gc, json, os, psutil
from webui.hearth import Hearth
proc = psutil.Process()
core = Hearth()
before = proc.memory_info().rss
core.load_model(None)
core.complete("hello", __import__("loaders").GenerationParams(max_new_tokens=4)).result()
loaded = proc.memory_info().rss
core.unload_model(); gc.collect()
after = proc.memory_info().rss
print(json.dumps({"before": before, "loaded": loaded, "after": after}))
"""


def test_unload_returns_the_memory():
    done = subprocess.run([sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=120)
    rss = json.loads(done.stdout.strip().splitlines()[-1])
    grew = rss["loaded"] - rss["before"]
    assert grew > 50 << 20, rss  # the model really was in memory
    assert rss["after"] - rss["before"] < grew * 0.3, rss


DECODE_SCRIPT = r"""
from webui.hearth import Hearth
import loaders
from loaders.fields import build
from loaders.params import GenerationParams
core = Hearth()
core.load_model(None)
text, stats = core.complete("The capital of France is", GenerationParams(temperature=0, max_new_tokens=8)).result()
print("decoded", stats.completion_tokens)
"""


def test_first_decode_does_not_crash_with_the_settings_hearth_picks():
    """Catches the AMX segfault seen with native builds (ggml_backend_amx_mul_mat): a
    crash kills the child with a signal instead of printing. On a CPU without AMX
    this passes trivially; on one with AMX it proves the probe chose well."""
    done = subprocess.run([sys.executable, "-c", DECODE_SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, f"decode died with {done.returncode}: {done.stderr[-1000:]}"
    assert "decoded 8" in done.stdout


def test_the_real_probe_child_succeeds_here(default_model):
    from loaders import cpu_repack
    assert cpu_repack.probe(default_model) is True


@pytest.mark.parametrize("setting, expected", [("off", False), ("on", True)])
def test_the_cpu_repack_setting_reaches_llama_cpp(default_model, setting, expected):
    """llama_cpp.Llama swallows unknown keyword arguments, so passing use_extra_bufts
    to it did nothing; the value must reach the model parameters llama.cpp loads with."""
    llama = loaders.get("llama.cpp")
    model = llama.load(default_model, build(llama.Options, {"n_ctx": 256, "cpu_repack": setting}))
    try:
        assert model._llm.model_params.use_extra_bufts is expected
    finally:
        model.unload()


def test_closing_the_stream_inside_a_multibyte_character(hearth):
    """The engine closes a backend's stream after a stop string or a Stop; when that
    lands between the bytes of one character (an empty piece), closing must not fail."""
    model = hearth.models.current.model
    ids = model.encode("<|im_start|>user\nRepeat exactly: 🌊🌊🌊 🔥🔥🔥<|im_end|>\n<|im_start|>assistant\n")
    with hearth.models.use():
        stream = model.generate(ids, GenerationParams(temperature=0, max_new_tokens=20), threading.Event())
        pieces = []
        for piece in stream:
            pieces.append(piece)
            if piece == "" and len(pieces) > 1:
                break  # mid-character: the next bytes would complete it
        stream.close()
    assert pieces[-1] == "" and "🌊" not in "".join(pieces), pieces


def test_an_empty_prompt_is_one_clear_error(hearth):
    with pytest.raises(Exception, match="the prompt is empty"):
        hearth.complete("", GenerationParams(max_new_tokens=4)).result()
    assert hearth.complete("Hi", GenerationParams(max_new_tokens=2)).result()[1].completion_tokens


def test_the_latest_replys_prompt_count_reads_the_same_from_any_thread(hearth, greedy):
    # A thread that once generated itself and now only reads (a test, an extension)
    # must see the latest reply's count, not its own old one.
    model = hearth.models.current.model
    ids = model.encode("A long prompt about lighthouses, rivers, and the sea at night.")
    for _ in model.generate(ids, greedy, threading.Event()):
        break
    assert model.last_prompt_eval_tokens == len(ids)
    hearth.complete("Short.", greedy).result()  # on the generation thread
    assert model.last_prompt_eval_tokens == len(model.encode("Short."))
