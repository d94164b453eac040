"""Models that ship no chat template, on the real SmolLM2 weights: a GGUF copy without
tokenizer.chat_template (its vocabulary still has ChatML's tokens), one whose ChatML
tokens are renamed too (a real model whose tokenizer has no ChatML markers), and a
Hugging Face folder without chat_template. Each chats through the template picked for
it, the model info route and the Model tab say which and why, and no reply shown,
answered or saved holds a template marker."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from loaders.params import GenerationParams
from tests.model_factory import gguf_without_template, hf_folder_without_template
from webui.api import install_api
from webui.chat.conversation import ChatOptions
from webui.chat.histories import HistoryStore
from webui.config import ServerSettings
from webui.hearth import Hearth
from webui.ui.model_tab import status_text

GREEDY = GenerationParams(temperature=0.0, seed=42, max_new_tokens=24)
# Short turns that a base model continues with more of the same, user's lines included:
# without stop strings SmolLM2 answers " Dog.\nUser: Name a person.\nAssistant: John. ..."
# in a plain transcript, and "Dog.<|im_end|>\n<|im_start|>user ..." in ChatML when
# <|im_start|> and <|im_end|> are not its tokens.
HISTORY = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
           {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."}]
ASK = "Name an animal."
MARKERS = ("<|im_start|>", "<|im_end|>", "<|turn_open|>", "<|turn_close|>", "User:", "Assistant:")


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """A Hearth of its own: these tests load other models than the session's."""
    hearth = Hearth(models_dir=Path(__file__).parent / "no-models-here")
    hearth.histories = HistoryStore(tmp_path_factory.mktemp("histories"))
    yield hearth
    hearth.unload_model()
    hearth.engine.close()


@pytest.fixture(scope="module")
def api(core):
    app = FastAPI()
    install_api(app, core, ServerSettings())
    with TestClient(app) as http:
        yield http


@pytest.fixture(scope="module")
def client(api):
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=api, max_retries=0)


def load(core: Hearth, path: Path, loader: str, options: dict) -> None:
    current = core.models.current
    if current is None or Path(current.path) != path:
        core.load_model(str(path), loader, options)


def ask(client) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="x", messages=[*HISTORY, {"role": "user", "content": ASK}],
                                          temperature=0, seed=42, max_tokens=GREEDY.max_new_tokens)


def test_a_gguf_without_template_chats_in_chatml_because_its_vocabulary_has_chatml_tokens(core, api, client):
    load(core, gguf_without_template(), "llama.cpp", {"n_ctx": 1024})
    info = api.get("/v1/internal/model/info").json()
    assert info["chat_template"] == "ChatML"
    assert "ships no chat template" in info["chat_template_reason"]
    assert "<|im_start|> and <|im_end|> as tokens" in info["chat_template_reason"]
    status = status_text(core)
    assert "**Chat template:** ChatML: the model ships no chat template" in status
    assert "&lt;|im_start|&gt;" in status  # escaped, so that Markdown shows the marker
    reply = ask(client).choices[0]
    assert reply.message.content.strip() and not any(m in reply.message.content for m in MARKERS)
    job = core.chat([{"role": "user", "content": ASK}], dataclasses.replace(GREEDY, max_new_tokens=1))
    job.result()
    assert {"<|im_end|>", "<|im_start|>"} <= set(job.params.stop)


def test_a_vocabulary_without_chatml_tokens_gets_a_plain_transcript_that_stops_at_user(core, api, client):
    load(core, gguf_without_template(chatml_tokens=False), "llama.cpp", {"n_ctx": 1024})
    info = api.get("/v1/internal/model/info").json()
    assert info["chat_template"] == "Plain"
    assert "turn markers of none of" in info["chat_template_reason"]
    assert "**Chat template:** Plain" in status_text(core)
    # The API: the reply ends where the model starts writing the user's next line.
    reply = ask(client).choices[0]
    assert reply.message.content.strip() == "Dog."
    assert reply.finish_reason == "stop"
    # The Chat tab's conversation, with the model's own template chosen: the same.
    options = ChatOptions(mode="instruct")
    conv = core.conversation(options)
    conv.history.messages.extend(dict(m) for m in HISTORY)
    sent = conv.send(ASK, options, GREEDY)
    text, _ = sent.job.result()
    assert sent.job.prompt.built.text.endswith("User: Name an animal.\nAssistant:")
    conv.update(sent, text)
    conv.finish(sent, failed=False)
    assert conv.messages[-1]["content"] == "Dog."


def test_a_reply_cut_inside_a_marker_is_saved_without_it(core):
    """The last defence: a token limit that ends the reply in "\\nUser" (the start of
    a stop string, held back and then released at the end) leaves no marker behind."""
    load(core, gguf_without_template(chatml_tokens=False), "llama.cpp", {"n_ctx": 1024})
    options = ChatOptions(mode="instruct")
    conv = core.conversation(options)
    conv.history.messages.extend(dict(m) for m in HISTORY)
    sent = conv.send(ASK, options, dataclasses.replace(GREEDY, max_new_tokens=4))
    text, stats = sent.job.result()
    assert text.endswith("\nUser") and stats.finish_reason == "length"  # " Dog", ".", "\n", "User"
    conv.update(sent, text)
    conv.finish(sent, failed=False)
    assert conv.messages[-1]["content"] == "Dog."
    saved = json.loads((core.space().histories.root / conv.history.character / f"{conv.history.id}.json").read_text())
    assert saved["messages"][-1]["content"] == "Dog."


def test_a_hugging_face_folder_without_template_gets_its_familys_template(core, api, client):
    folder = hf_folder_without_template()
    assert not (folder / "chat_template.jinja").exists()
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
    core.load_model(str(folder), "Transformers", {"device": "cpu"})
    info = api.get("/v1/internal/model/info").json()
    assert info["chat_template"] == "ChatML"
    assert "<|im_start|> and <|im_end|> as tokens" in info["chat_template_reason"]
    reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": ASK}],
                                           temperature=0, max_tokens=8)
    content = reply.choices[0].message.content
    assert content.strip() and not any(m in content for m in MARKERS)
