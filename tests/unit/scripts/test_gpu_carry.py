"""What scripts/gpu_check.sh --prepare puts in .gpu-carry/ for a lent GPU machine: the
trimmed llama.cpp sources keep what a CUDA build and the GGUF converter need, and the
size check holds the working tree plus the carried files to the device tool's 64 MiB."""
from __future__ import annotations

from pathlib import Path

import pytest

from scripts.gpu_carry import LIMIT, ROOT, keep, size_report, travelling_size

LLAMA = Path("vendor/llama.cpp")


@pytest.mark.parametrize("path", [
    "CMakeLists.txt", "pyproject.toml", "llama_cpp/llama.py", LLAMA / "CMakeLists.txt",
    LLAMA / "convert_hf_to_gguf.py", LLAMA / "conversion/llama.py", LLAMA / "gguf-py/gguf/__init__.py",
    LLAMA / "src/llama.cpp", LLAMA / "common/common.cpp", LLAMA / "vendor/nlohmann/json.hpp",
    LLAMA / "ggml/src/ggml-cuda/mmq.cu", LLAMA / "ggml/src/ggml-cpu/ggml-cpu.c", LLAMA / "ggml/src/ggml-alloc.c",
])
def test_the_build_and_the_converter_keep_their_files(path):
    assert keep(Path(path))


@pytest.mark.parametrize("path", [
    ".git/index", "tests/test_llama.py", "docs/index.md", "llama_cpp/lib/libllama.so",
    LLAMA / "models/ggml-vocab-llama-bpe.gguf", LLAMA / "docs/build.md", LLAMA / "tools/server/server.cpp",
    LLAMA / "tests/test-backend-ops.cpp", LLAMA / "ggml/src/ggml-vulkan/ggml-vulkan.cpp",
    LLAMA / "ggml/src/ggml-metal/ggml-metal.m", LLAMA / ".git",
])
def test_what_no_cuda_build_reads_is_left_out(path):
    assert not keep(Path(path))


def test_size_check_counts_the_tree_and_the_carried_files(tmp_path):
    carried = tmp_path / "carry"
    carried.mkdir()
    (carried / "blob").write_bytes(b"\0" * (3 << 20))
    tree = travelling_size()
    fits, line = size_report([carried], limit=tree + (4 << 20))
    assert fits and "carried 3.0 MiB" in line
    fits, line = size_report([carried], limit=tree + (2 << 20))
    assert not fits and line.endswith(f"of {(tree + (2 << 20)) / (1 << 20):.0f} MiB")


def test_a_prepared_carry_folder_fits():
    carried = ROOT / ".gpu-carry"
    if not carried.is_dir():
        pytest.skip("no .gpu-carry here (bash scripts/gpu_check.sh --prepare makes it)")
    fits, line = size_report([carried], limit=LIMIT)
    assert fits, line
