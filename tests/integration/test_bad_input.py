"""Everything a user can get wrong when loading or generating: one clear line, and
the app keeps its previous, working model."""
import os
import urllib.request

import pytest

from loaders.base import LoadError
from loaders.fields import SettingError
from loaders.params import GenerationParams
from tests.support import running_server
from webui.hearth import Hearth


@pytest.fixture(scope="module")
def core(default_model):
    c = Hearth()
    c.load_model(str(default_model), "llama.cpp", {"n_ctx": 1024})
    yield c
    c.unload_model()
    c.engine.close()


def assert_still_serving(core):
    assert core.models.current is not None
    text, _ = core.complete("The sky is", GenerationParams(temperature=0, max_new_tokens=4, ignore_eos=True)).result()
    assert text


def load_error(core, path, options=None, loader=None) -> str:
    with pytest.raises(LoadError) as e:
        core.load_model(str(path), loader, options)
    message = str(e.value)
    assert "\n" not in message and len(message) < 300, message
    assert_still_serving(core)
    return message


def test_missing_path(core, tmp_path):
    assert "no such file" in load_error(core, tmp_path / "nope.gguf")


def test_truncated_gguf(core, default_model, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(default_model, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(os.path.getsize(default_model) - 1000))
    assert "truncated" in load_error(core, cut, loader="llama.cpp")


def test_text_file_named_gguf(core, tmp_path):
    fake = tmp_path / "notes.gguf"
    fake.write_text("just some notes\n")
    assert "cannot tell what kind of model" in load_error(core, fake)
    assert "not a GGUF file" in load_error(core, fake, loader="llama.cpp")


def test_negative_n_ctx(core, default_model):
    assert "n_ctx must be at least 0 (got -1)" in load_error(core, default_model, {"n_ctx": -1})


def test_n_ctx_whose_kv_cache_cannot_fit(core, default_model):
    message = load_error(core, default_model, {"n_ctx": 2**24})  # the most n_ctx may be
    assert "KV cache" in message and "GiB of RAM is free" in message and "try n_ctx=" in message


def test_unknown_loader(core, default_model):
    assert "unknown loader" in load_error(core, default_model, loader="magic")


def test_negative_temperature(core):
    with pytest.raises(SettingError, match="temperature must be at least 0"):
        GenerationParams.from_mapping({"temperature": -1})
    assert_still_serving(core)


def test_prompt_longer_than_the_context(core):
    job = core.complete("word " * 2000, GenerationParams(max_new_tokens=4))
    with pytest.raises(Exception, match="the prompt is .* tokens but the context holds 1024"):
        job.result()
    assert_still_serving(core)


def test_bad_grammar_is_one_line(core):
    job = core.complete("Answer:", GenerationParams(max_new_tokens=4, grammar="root ::= ("))
    with pytest.raises(Exception, match="grammar"):
        job.result()
    assert_still_serving(core)


def test_server_with_a_bad_model_still_serves(tmp_path):
    with running_server("--model", str(tmp_path / "missing.gguf")) as url:
        with urllib.request.urlopen(url + "/healthz") as r:
            assert b'"model":null' in r.read()


def test_hugging_face_folder_given_to_llama_cpp_names_the_right_loader(core, tmp_path):
    import json
    import struct

    folder = tmp_path / "some-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    header = json.dumps({"__metadata__": {"format": "pt"}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    message = load_error(core, folder, loader="llama.cpp")
    assert "not a GGUF file: choose the Transformers loader" in message
