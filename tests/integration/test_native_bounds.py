"""What a request hands to native code is bounded before it gets there, and a load
never tells what a path on this machine holds.

The crash cases run against a real server in a child process (`running_server`), so
a regression kills that server, not the test run: a GBNF grammar nested 20,000 deep
made llama.cpp's recursive parser overflow the C stack (SIGSEGV), and n_threads
100,000 crashed it when starting threads."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx
import pytest

from loaders.base import LoadError
from loaders.grammar_check import MAX_NESTING
from loaders.hf_common import read_config, require_format
from loaders.llamacpp import LlamaCppLoader, LlamaCppOptions
from tests.support import ROOT, running_server

ATTACK_GRAMMAR = "root ::= " + "(" * 20000 + '"a"' + ")" * 20000
JSON_OBJECT = r'''root ::= "{" ws "\"answer\"" ws ":" ws string ws "}"
string ::= "\"" [a-zA-Z ]{1,20} "\""
ws ::= [ ]?'''


@pytest.fixture(scope="module")
def server():
    with running_server("--n-ctx", "1024") as url:
        yield url


def post(server: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(server + path, json=body, timeout=120)


def one_line_error(response: httpx.Response) -> str:
    assert 400 <= response.status_code < 500, response.text[:300]
    message = response.json()["error"]["message"]
    assert "\n" not in message and len(message) < 300, message
    return message


def assert_still_serving(server: str) -> None:
    health = httpx.get(server + "/healthz", timeout=10).json()
    assert health["status"] == "ok" and "SmolLM2" in health["model"]
    reply = post(server, "/v1/completions", {"prompt": "The sky is", "max_tokens": 3, "temperature": 0})
    assert reply.status_code == 200 and reply.json()["choices"][0]["text"]


def test_the_deep_grammar_attack_is_one_line_and_the_server_keeps_serving(server):
    response = post(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 4, "grammar": ATTACK_GRAMMAR})
    assert f"more than {MAX_NESTING} deep" in one_line_error(response)
    assert_still_serving(server)
    answer = post(server, "/v1/completions", {"prompt": "Reply in JSON:", "max_tokens": 40, "temperature": 0,
                                              "grammar": JSON_OBJECT})
    assert answer.status_code == 200, answer.text[:300]
    assert json.loads(answer.json()["choices"][0]["text"])["answer"]


def test_a_grammar_nested_to_the_bound_is_served(server):
    grammar = "root ::= " + "(" * MAX_NESTING + '"a"' + ")" * MAX_NESTING
    response = post(server, "/v1/completions", {"prompt": "Say a:", "max_tokens": 4, "grammar": grammar})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["choices"][0]["text"] == "a"


def test_an_overlong_grammar_is_refused_by_the_request_schema(server):
    response = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                     "grammar": 'root ::= "a"' + " " * 70_000})
    assert "grammar" in one_line_error(response)
    assert_still_serving(server)


def test_a_thread_count_past_the_bound_is_refused_and_the_model_stays(server):
    response = post(server, "/v1/internal/model/load", {"model_name": "", "args": {"n_threads": 100_000}})
    assert "n_threads must be at most" in one_line_error(response)
    info = httpx.get(server + "/v1/internal/model/info", timeout=10).json()
    assert "SmolLM2" in info["model_name"] and info["context_length"] == 1024
    assert_still_serving(server)


def test_the_nesting_bound_is_safe_on_a_small_thread_stack(default_model):
    """llama.cpp needs about 455 bytes of C stack per nested group (measured: 18,593
    levels parse on an 8 MiB thread stack, 18,750 crash). At the bound, a grammar
    still builds on a 128 KiB thread stack, musl's default: run in a child process,
    where a crash cannot take the test run with it."""
    script = textwrap.dedent(f"""
        import sys, threading
        import llama_cpp
        llm = llama_cpp.Llama(model_path={str(default_model)!r}, vocab_only=True, verbose=False)
        grammar = ("root ::= " + "(" * {MAX_NESTING} + '"a"' + ")" * {MAX_NESTING}).encode()
        built = []
        threading.stack_size(128 * 1024)
        worker = threading.Thread(target=lambda: built.append(
            bool(llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar, b"root"))))
        worker.start()
        worker.join()
        sys.exit(0 if built == [True] else 3)
    """)
    child = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120)
    assert child.returncode == 0, child.stderr.decode(errors="replace")[-1000:]


# --- a load never tells what a path holds --------------------------------------------

def load_message(loader, path, options) -> str:
    with pytest.raises(LoadError) as caught:
        loader.load(path, options)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_llama_cpp_on_any_path_says_the_same_whether_it_exists_or_not(tmp_path):
    (tmp_path / "here").mkdir()
    secret = tmp_path / "here" / "secret.conf"
    secret.write_text("password=hunter2\n")
    missing = tmp_path / "gone" / "secret.conf"
    folder = tmp_path / "here"
    options = LlamaCppOptions()
    existing = load_message(LlamaCppLoader(), secret, options)
    assert existing == load_message(LlamaCppLoader(), missing, options)
    assert "hunter2" not in existing and "pass" not in existing
    assert existing == "secret.conf: no such file, or not a GGUF file"
    assert load_message(LlamaCppLoader(), folder, options) == load_message(
        LlamaCppLoader(), tmp_path / "here-not", options).replace("here-not", "here")


def test_hugging_face_loaders_on_any_path_say_the_same_whether_it_exists_or_not(tmp_path):
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "notes.txt").write_text("private notes")
    messages = []
    for path in (tmp_path / "here" / "notes.txt", tmp_path / "gone" / "notes.txt"):
        with pytest.raises(LoadError) as caught:
            require_format(path, "Transformers", ())
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "private" not in messages[0]
    assert "no such file or folder, or not a Hugging Face model folder" in messages[0]


def test_a_ram_prompt_cache_larger_than_ram_is_refused_before_loading(default_model):
    options = LlamaCppOptions(prompt_cache="ram", prompt_cache_mb=1 << 20)
    assert "more than this machine's" in load_message(LlamaCppLoader(), default_model, options)


@pytest.mark.parametrize("content, words", [
    ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
    ('{"a": "' + "x" * (17 << 20) + '"}', "larger than 16 MiB"),
    ("\xff\xfe{}", "not UTF-8 text"),
    ('{"a": ', "cannot be read as JSON"),
])
def test_a_crafted_config_json_is_one_line(tmp_path, content, words):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_bytes(content.encode("latin-1") if content.startswith("\xff")
                                         else content.encode())
    with pytest.raises(LoadError) as caught:
        read_config(folder)
    message = str(caught.value)
    assert words in message and "\n" not in message and len(message) < 200, message
