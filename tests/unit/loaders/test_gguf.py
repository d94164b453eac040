import io
import os

import pytest

from loaders.gguf import GGUFError, check_complete, read_file_header, read_header


def test_reads_the_real_default_model(default_model):
    h = check_complete(default_model)
    assert h.architecture == "llama"
    assert h.quantization == "Q4_1"
    assert h.context_length == 8192 and h.n_layers == 30
    assert "<|im_start|>" in h.chat_template
    assert h.expected_file_size() == os.path.getsize(default_model)
    # 30 layers x 3 KV heads x (64 + 64) dims x 2 bytes per token
    assert h.kv_cache_bytes(1) == 30 * 3 * 128 * 2


def test_truncated_file_is_detected(default_model, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(default_model, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(os.path.getsize(default_model) // 2))
    with pytest.raises(GGUFError, match="truncated: .* of .* bytes"):
        check_complete(cut)


def test_truncated_header_is_detected(default_model, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(default_model, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(1000))
    with pytest.raises(GGUFError, match="header is truncated"):
        read_file_header(cut)


def test_not_a_gguf():
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_header(io.BytesIO(b"hello world, I am text"))


def test_reads_from_a_partial_prefix_without_tensors(default_model):
    # What a download preview does: parse metadata from the first bytes only.
    with open(default_model, "rb") as f:
        head = f.read(4 << 20)
    h = read_header(io.BytesIO(head), with_tensors=False)
    assert h.quantization == "Q4_1"
