"""Names from users and from the Hub: quantization types read from file names, files
grouped the way users think, and every name that could leave models/ refused."""
from __future__ import annotations

import pytest

from webui.modelfiles.hub import (
    HubError,
    RemoteFile,
    UnsafeName,
    check_filename,
    check_repo_id,
    check_revision,
    group_files,
    local_dir_for,
    quant_from_name,
    target_path,
)


@pytest.mark.parametrize("name, quant", [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"), ("llama-3-8b-instruct-q4_k_m.gguf", "Q4_K_M"),
    ("Q5_K_S/model-00001-of-00003.gguf", "Q5_K_S"), ("model.Q8_0.gguf", "Q8_0"),
    ("Qwen3-8B-UD-Q4_K_XL.gguf", "Q4_K_XL"), ("m-IQ2_XXS.gguf", "IQ2_XXS"), ("m-IQ4_NL.gguf", "IQ4_NL"),
    ("gemma-bf16.gguf", "BF16"), ("model-fp16.gguf", "F16"), ("exl2-4.65bpw", "4.65bpw"),
    ("SmolLM2-135M-Instruct.gguf", None), ("model.safetensors", None),
])
def test_quantization_from_the_name(name, quant):
    assert quant_from_name(name) == quant


def test_files_are_grouped_and_none_is_dropped():
    files = [RemoteFile(p, 100) for p in [
        "README.md", ".gitattributes", "m-Q4_K_M.gguf", "m-Q8_0.gguf", "mmproj-m-F16.gguf",
        "Q6_K/m-Q6_K-00001-of-00002.gguf", "Q6_K/m-Q6_K-00002-of-00002.gguf",
        "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "tokenizer.json", "tokenizer.model",
        "gptq-4bit-32g/config.json", "gptq-4bit-32g/quantize_config.json", "gptq-4bit-32g/model.safetensors",
        "awq/model.safetensors", "6.0bpw/measurement.json", "6.0bpw/output-00001-of-00002.safetensors",
        "pytorch_model.bin", "onnx/model.onnx"]]
    groups = {g.label: g for g in group_files(files, "org/model")}
    assert sorted(f.path for g in groups.values() for f in g.files) == sorted(f.path for f in files)
    ggufs = [g for g in groups.values() if g.kind == "gguf"]
    assert sorted(g.quant_from_name for g in ggufs) == ["F16", "Q4_K_M", "Q6_K", "Q8_0"]
    split = groups["Q6_K/m-Q6_K (2 parts)"]
    assert [f.path for f in split.files] == ["Q6_K/m-Q6_K-00001-of-00002.gguf", "Q6_K/m-Q6_K-00002-of-00002.gguf"]
    assert split.size == 200
    assert groups["mmproj-m-F16.gguf"].note == "vision projector"
    kinds = {g.label.split(":")[0]: g.kind for g in groups.values() if ":" in g.label}
    assert kinds == {"(top level)": "safetensors", "gptq-4bit-32g": "gptq", "awq": "awq", "6.0bpw": "exl2"}
    top = groups["(top level): safetensors (2 weight files)"]
    assert {"config.json", "tokenizer.json", "tokenizer.model", "model.safetensors.index.json"} <= \
        {f.path for f in top.files}
    assert {f.path for f in groups["other files"].files} == {"README.md", ".gitattributes", "pytorch_model.bin",
                                                             "onnx/model.onnx"}


def test_a_gptq_repo_name_marks_its_top_level_weights():
    groups = group_files([RemoteFile("model.safetensors", 1), RemoteFile("config.json", 1)], "org/Model-GPTQ")
    assert groups[0].kind == "gptq"


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a\\..\\b", "C:\\x", "c:x", "a//b", "a/",
                                  "./a", "a/./b", "", "a\x00b", "a\nb", ".partial/a", ".hearth-download.json",
                                  ".cache/huggingface/x", "x" * 1001])
def test_escaping_file_names_are_refused(name):
    with pytest.raises(UnsafeName):
        check_filename(name)


@pytest.mark.parametrize("name", ["model.gguf", "Q4_K_M/model-00001-of-00002.gguf", ".gitattributes",
                                  "a..b.gguf", "weird name (1).txt"])
def test_ordinary_file_names_pass(name, tmp_path):
    assert check_filename(name) == name
    assert target_path(tmp_path, name).is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize("repo_id", ["../../etc", "org/../x", "a/b/c", "org/", "/org", "org//x", "..", ".",
                                     "org/x y", "org/-x", "-org/x", "org/x.", "org/a..b", "org/a--b", "o" * 97 + "/x",
                                     "org/x\x00", "org\\x"])
def test_bad_repo_ids_are_refused(repo_id, tmp_path):
    with pytest.raises(HubError):
        check_repo_id(repo_id)
    with pytest.raises(HubError):
        local_dir_for(tmp_path, repo_id)


def test_repo_ids_map_to_one_folder_inside_models(tmp_path):
    assert local_dir_for(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF") == \
        tmp_path.resolve() / "HuggingFaceTB_SmolLM2-135M-Instruct-GGUF"
    assert local_dir_for(tmp_path, "gpt2") == tmp_path.resolve() / "gpt2"
    assert check_repo_id("https://huggingface.co/org/model") == "org/model"


@pytest.mark.parametrize("rev, ok", [(None, "main"), ("", "main"), ("v1.0", "v1.0"), ("refs/pr/1", "refs/pr/1"),
                                     ("a" * 40, "a" * 40), ("../main", None), ("main/../../x", None),
                                     ("/main", None), ("a//b", None), ("a b", None)])
def test_revisions(rev, ok):
    if ok is None:
        with pytest.raises(UnsafeName):
            check_revision(rev)
    else:
        assert check_revision(rev) == ok
