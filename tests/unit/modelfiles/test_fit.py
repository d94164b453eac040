"""Will-it-fit: the estimate's parts from real headers and configs, and the verdicts.

No GPU exists on this machine, so the verdicts for GPUs are checked on `Machine`
values that describe one (a plain dataclass standing in for what nvidia-smi would
report); the nvidia-smi parser is checked on that tool's documented CSV output."""
from __future__ import annotations

import shutil

import pytest

from loaders.gguf import read_file_header, read_metadata_prefix
from tests.hub_standin import SMOLLM_CONFIG
from webui.modelfiles import fit
from webui.modelfiles.fit import GiB, Gpu, Machine, MiB

KV_PER_TOKEN = 30 * 3 * 64 * 2 * 2  # SmolLM2-135M: layers x KV heads x head size x (K, V) x f16


@pytest.fixture(scope="module")
def shape(default_model):
    return fit.shape_from_gguf(read_file_header(default_model), default_model.stat().st_size)


def test_shape_from_the_full_gguf_header(shape, default_model):
    assert shape.n_layers == 30 and shape.kv_bytes_per_token == KV_PER_TOKEN
    assert len(shape.layer_bytes) == 30 and len(set(shape.layer_bytes)) == 1
    assert shape.weights_bytes == default_model.stat().st_size
    # The token embedding (49152 x 576, Q8_0) is most of what is not in a layer.
    assert 30e6 < shape.nonlayer_weights < 33e6
    assert shape.context_length == 8192 and shape.n_vocab == 49152


def test_the_first_bytes_give_the_same_estimate_as_the_whole_header(shape, default_model):
    with open(default_model, "rb") as f:
        prefix = fit.shape_from_gguf(read_metadata_prefix(f.read(512 * 1024)), shape.weights_bytes)
    assert prefix.kv_bytes_per_token == shape.kv_bytes_per_token and prefix.n_layers == shape.n_layers
    assert fit.estimate(prefix, 4096).total_bytes == fit.estimate(shape, 4096).total_bytes
    assert prefix.layer_bytes == () and 0 < prefix.per_layer_weights < shape.weights_bytes / 30


def test_config_json_and_gguf_agree_on_the_kv_cache():
    from_config = fit.shape_from_config(SMOLLM_CONFIG, 270_000_000)
    assert from_config.kv_bytes_per_token == KV_PER_TOKEN and from_config.n_layers == 30
    nested = fit.shape_from_config({"text_config": SMOLLM_CONFIG}, 1)
    assert nested.kv_bytes_per_token == KV_PER_TOKEN
    explicit_head = fit.shape_from_config({**SMOLLM_CONFIG, "head_dim": 128}, 1)
    assert explicit_head.kv_bytes_per_token == 2 * KV_PER_TOKEN


def test_the_estimate_is_weights_plus_kv_plus_overhead(shape):
    est = fit.estimate(shape, 2048)
    assert est.kv_bytes == 2048 * KV_PER_TOKEN
    assert est.total_bytes == shape.weights_bytes + est.kv_bytes + est.overhead_bytes
    assert fit.RUNTIME_BASE < est.overhead_bytes < 100 * MiB
    assert fit.estimate(shape, 0).n_ctx == 8192  # 0 = the model's own context
    assert fit.estimate(shape, 8192).total_bytes - fit.estimate(shape, 4096).total_bytes == 4096 * KV_PER_TOKEN


def test_verdicts_without_a_gpu(shape):
    est = fit.estimate(shape, 4096)
    v = fit.verdict(est, Machine(8 * GiB))
    assert (v.kind, v.text, v.gpu_layers) == ("ram", "fits in RAM only", 0)
    v = fit.verdict(est, Machine(est.total_bytes - 1))
    assert (v.kind, v.text) == ("none", "does not fit")


def test_verdicts_with_gpus(shape):
    est = fit.estimate(shape, 4096)
    big = Machine(8 * GiB, (Gpu(0, "big", 40 * GiB, 80 * GiB),))
    assert fit.verdict(est, big).text == "fits in VRAM" and fit.propose_gpu_layers(est, big) == -1

    half = fit.GPU_CONTEXT + est.overhead_bytes + 15 * est.layer_bytes() + 1
    partial = Machine(8 * GiB, (Gpu(0, "small", int(half), 2 * GiB),))
    v = fit.verdict(est, partial)
    assert (v.kind, v.text, v.gpu_layers) == ("partial", "fits with 15 of 30 layers on the GPU", 15)

    two = Machine(8 * GiB, (Gpu(0, "a", int(half), 2 * GiB), Gpu(1, "b", int(half), 2 * GiB)))
    assert fit.verdict(est, two).gpu_layers == -1  # 15 + 15 layers: all of them

    tiny = Machine(8 * GiB, (Gpu(0, "tiny", 100 * MiB, 1 * GiB),))
    assert fit.verdict(est, tiny).text == "fits in RAM only"
    nothing = Machine(10 * MiB, (Gpu(0, "tiny", 100 * MiB, 1 * GiB),))
    assert fit.verdict(est, nothing).text == "does not fit"

    # More free VRAM never proposes fewer layers.
    proposals = [fit.propose_gpu_layers(est, Machine(8 * GiB, (Gpu(0, "g", int(m * MiB), 80 * GiB),)))
                 for m in range(400, 800, 10)]
    as_layers = [30 if p == -1 else p for p in proposals]
    assert as_layers == sorted(as_layers) and as_layers[0] == 0 and as_layers[-1] == 30


def test_nvidia_smi_output_is_parsed():
    text = ("0, NVIDIA H100 80GB HBM3, 79640, 81559\n"
            "1, NVIDIA GeForce RTX 4090, 20112, 24564\n"
            "2, GRID A100-8C, [N/A], [N/A]\n")
    gpus = fit.parse_nvidia_smi(text)
    assert gpus == (Gpu(0, "NVIDIA H100 80GB HBM3", 79640 * MiB, 81559 * MiB),
                    Gpu(1, "NVIDIA GeForce RTX 4090", 20112 * MiB, 24564 * MiB))
    assert fit.parse_nvidia_smi("") == ()


def test_this_machine():
    machine = fit.detect_machine()
    assert machine.free_ram_bytes > 0
    if shutil.which("nvidia-smi") is None:
        assert machine.gpus == ()  # no GPU here: the verdicts say RAM


def test_summary_is_one_line(shape):
    text = fit.summary(fit.estimate(shape, 2048), Machine(8 * GiB))
    assert "\n" not in text and text.startswith("≈ ") and text.endswith("fits in RAM only")
    assert "2,048 tokens" in text
