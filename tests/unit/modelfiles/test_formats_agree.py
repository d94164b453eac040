"""One folder of files is one format, whoever asks: the loaders (which loader opens it),
the local model list (its Format column) and the Hub listing (its kind, by names
before config.json is read and by config.json after). All three go through
loaders.formats; this test holds them to it on the same folders."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from loaders.formats import CheckpointFormat as F
from loaders.hf_common import model_format
from webui.modelfiles.hub import RemoteFile, apply_config, group_files
from webui.modelfiles.local import scan

REPO = "org/repo"

# folder name, its config.json (None: it has none), its other files, the format
CASES = [
    ("plain", {"model_type": "llama"}, ["model.safetensors", "tokenizer.json"], F.SAFETENSORS),
    ("gptq-config", {"quantization_config": {"quant_method": "gptq"}}, ["model.safetensors"], F.GPTQ),
    ("autogptq", {}, ["quantize_config.json", "model.safetensors"], F.GPTQ),
    ("exl2-config", {"quantization_config": {"quant_method": "exl2"}}, ["output.safetensors"], F.EXL2),
    ("exl2-measured", {}, ["measurement.json", "output.safetensors"], F.EXL2),
    ("awq-config", {"quantization_config": {"quant_method": "awq"}}, ["model.safetensors"], F.AWQ),
    ("autoawq", {}, ["quant_config.json", "model.safetensors"], F.AWQ),
    ("named-like-gptq", {}, ["model.safetensors"], F.SAFETENSORS),  # config.json wins over the name
    ("Model-GPTQ", None, ["model.safetensors"], F.GPTQ),  # no config.json: the name is the hint
    ("4.0bpw", None, ["output.safetensors"], F.EXL2),
]


def write_file(path: Path) -> None:
    if path.suffix == ".safetensors":
        header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    else:
        path.write_text("{}")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for name, config, files, _ in CASES:
        folder = root / REPO.replace("/", "_") / name
        folder.mkdir(parents=True)
        if config is not None:
            (folder / "config.json").write_text(json.dumps(config))
        for file in files:
            write_file(folder / file)
    return root


def hub_kinds() -> dict[str, str]:
    """Each case's kind in a Hub listing of the same files, after config.json is read."""
    files = [RemoteFile(f"{name}/{f}", 10) for name, config, names, _ in CASES
             for f in names + (["config.json"] if config is not None else [])]
    kinds = {}
    for group in group_files(files, REPO):
        if group.kind == "other":
            continue
        name = group.files[0].path.split("/")[0]
        config = next(c for n, c, _, _ in CASES if n == name)
        if config is not None:
            apply_config(group, config)
        kinds[name] = group.kind
    return kinds


@pytest.mark.parametrize("name, config, files, expected", CASES, ids=[c[0] for c in CASES])
def test_the_loaders_the_local_list_and_the_hub_agree(models, name, config, files, expected):
    folder = models / REPO.replace("/", "_") / name
    local = {m.path.name: m.format for m in scan(models)}
    assert local[name] == expected.label
    assert F.from_kind(hub_kinds()[name]) is expected
    # A loader needs config.json; where there is one, it sees the same format.
    assert model_format(folder) is (expected if config is not None else None)


def test_before_config_json_is_read_the_hub_guesses_from_names():
    """The listing's first look (no file read yet) already uses the same rule."""
    files = [RemoteFile(p, 1) for p in ("gptq-4bit/model.safetensors", "gptq-4bit/config.json",
                                        "m/quantize_config.json", "m/model.safetensors")]
    assert {g.files[0].path.split("/")[0]: g.kind for g in group_files(files, REPO)} == \
        {"gptq-4bit": "gptq", "m": "gptq"}
