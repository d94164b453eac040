#!/usr/bin/env bash
# GPU readiness check for Hearth's loaders, in one go on a lent NVIDIA machine with no
# network (docs/GPU.md): builds llama-cpp-python with CUDA (sm_90) and exllamav2's CUDA
# extension, makes a tiny model there, runs the loader contract
# (tests/integration/test_loader_contract.py) on CUDA for llama.cpp (n_gpu_layers=-1),
# Transformers (fp16, bf16) and ExLlamaV2, and prints tokens/s of Hearth against the raw
# library for each; a summary table at the end, copied with the logs to $OUT if set.
# Every step has its own time limit inside one budget (560 s), and none stops the rest.
#
# 1. Here, once (needs the network; writes .gpu-carry/, ignored by git, ~12 MiB):
#        bash scripts/gpu_check.sh --prepare
# 2. The device tool's call, exactly:
#        run(command="bash scripts/gpu_check.sh", carry=[".gpu-carry"], timeout_s=600)
#    then give_back. Exit status 0: every step that ran passed.
#
# Here, without a GPU (the same steps on the CPU, no builds; ~30 s on 2 idle cores):
#        bash scripts/gpu_check.sh --dry-run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Here, the project's venv; on the lent machine, its python3 (the one with PyTorch).
if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY="python3"; fi

case "${1:-}" in
    --prepare)
        shift
        exec "$PY" scripts/gpu_carry.py prepare "$@"
        ;;
    --dry-run)
        shift
        exec "$PY" scripts/gpu_check.py --dry-run "$@"
        ;;
    -h|--help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi not found); run with --dry-run to check the steps on the CPU" >&2
    exit 2
fi
exec "$PY" scripts/gpu_check.py "$@"
