#!/usr/bin/env bash
# Install what is missing, then serve Hearth on http://127.0.0.1:7860 with the
# built-in model loaded. Extra arguments go to `hearth` (try ./start.sh --help).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
ensure_venv
ensure_llama_cpp
ensure_hearth ""
# The documents extension's model is installed when it is asked for by name.
case " $* " in *" documents "*) ensure_documents ;; esac
exec "$VENV/bin/hearth" "$@"
