#!/usr/bin/env bash
# Install what the tests need (Chromium included), then run the whole suite.
# Extra arguments go to pytest, e.g. ./test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
ensure_venv
ensure_llama_cpp
ensure_hearth "test"
ensure_torch_backends
ensure_documents
ensure_chromium
# llama.cpp's own llama-server, for the remote loader's tests (once; minutes on 2 cores).
ensure_llama_server >/dev/null
mkdir -p test-artifacts
# The lint gate first: a finding fails the run in seconds, before the suite's minutes.
"$VENV/bin/ruff" check --quiet .
exec "$VENV/bin/python" -m pytest "${@:-tests}"
